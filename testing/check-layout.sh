#!/bin/sh
# Keeps the architecture as the design draws it: the repository library
# (rustic_core, rustic_backend) is used only in lifeboat-core's repo/
# room, the engine client (bollard) only in its engine/ room, and the
# binary uses neither, nor runs blocking work itself (spawn_blocking):
# every crossing from async to blocking code is the library's.
set -eu
cd "$(dirname "$0")/.."

# The lines of Rust files that use an identifier in code: comments and
# one-line string literals are left out, so that a log target named
# "bollard::docker" or a doc comment naming a crate does not count.
code_uses() { # pattern file...
    pattern=$1
    shift
    for file in "$@"; do
        sed -e 's/"\([^"\\]\|\\.\)*"/""/g' -e 's://.*$::' "$file" |
            grep -nE "(^|[^A-Za-z0-9_])($pattern)([^A-Za-z0-9_]|$)" |
            sed "s|^|$file:|"
    done
}

# The check must see a use, and must not see one in a comment or string.
sample=$(mktemp)
trap 'rm -f "$sample"' EXIT
cat > "$sample" <<'EOF'
// rustic_core is only named here
let target = "rustic_core::x";
use rustic_core::repofile::Node;
EOF
if [ "$(code_uses 'rustic_core' "$sample" | wc -l)" -ne 1 ]; then
    echo "check-layout: the check itself is broken" >&2
    exit 1
fi

failed=0
report() { # what, lines
    if [ -n "$2" ]; then
        echo "check-layout: $1:" >&2
        echo "$2" >&2
        failed=1
    fi
}

core=crates/lifeboat-core/src
outside_repo=$(find "$core" -name '*.rs' -not -path "$core/repo/*")
outside_engine=$(find "$core" -name '*.rs' -not -path "$core/engine/*")
binary=$(find crates/lifeboat/src -name '*.rs')

# shellcheck disable=SC2086 # the file lists are split on purpose
{
    report "the repository library used outside repo/" \
        "$(code_uses 'rustic_core|rustic_backend' $outside_repo)"
    report "the engine client used outside engine/" \
        "$(code_uses 'bollard' $outside_engine)"
    report "the binary uses a library it must leave to lifeboat-core" \
        "$(code_uses 'rustic_core|rustic_backend|bollard' $binary)"
    report "the binary runs blocking work itself (the library's operations do)" \
        "$(code_uses 'spawn_blocking' $binary)"
}
report "the binary depends on a library it must leave to lifeboat-core" \
    "$(sed -n '/^\[dependencies\]/,/^\[/p' crates/lifeboat/Cargo.toml |
        grep -nE '^(rustic_core|rustic_backend|bollard)\b' || true)"

exit $failed
