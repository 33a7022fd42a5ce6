#!/bin/sh
# Test image entrypoint: like the official image, initialise an empty data
# directory with the root password from MARIADB_ROOT_PASSWORD(_FILE) or
# MYSQL_ROOT_PASSWORD(_FILE) and MARIADB_DATABASE / MYSQL_DATABASE, then run
# the server in the foreground on its socket only.
set -eu
datadir=/var/lib/mysql
mkdir -p /run/mysqld "$datadir"
chown mysql:mysql /run/mysqld "$datadir"

secret() {
    value="$1"; file="$2"
    if [ -z "$value" ] && [ -n "$file" ]; then value=$(cat "$file"); fi
    printf '%s' "$value"
}
root_password=$(secret "${MARIADB_ROOT_PASSWORD:-${MYSQL_ROOT_PASSWORD:-}}" \
    "${MARIADB_ROOT_PASSWORD_FILE:-${MYSQL_ROOT_PASSWORD_FILE:-}}")
database="${MARIADB_DATABASE:-${MYSQL_DATABASE:-}}"

if [ ! -d "$datadir/mysql" ]; then
    mariadb-install-db --user=mysql --datadir="$datadir" --skip-test-db \
        --auth-root-authentication-method=normal >/dev/null
    mariadbd --user=mysql --datadir="$datadir" --skip-networking \
        --socket=/run/mysqld/init.sock &
    pid=$!
    for _ in $(seq 120); do
        mariadb-admin --socket=/run/mysqld/init.sock -uroot ping >/dev/null 2>&1 && break
        sleep 0.5
    done
    {
        printf "ALTER USER 'root'@'localhost' IDENTIFIED BY '%s';\n" "$root_password"
        if [ -n "$database" ]; then
            printf 'CREATE DATABASE IF NOT EXISTS `%s`;\n' "$database"
        fi
        printf 'FLUSH PRIVILEGES;\n'
    } | mariadb --socket=/run/mysqld/init.sock -uroot
    kill "$pid"
    wait "$pid" || true
fi
exec mariadbd --user=mysql --datadir="$datadir" --skip-networking "$@"
