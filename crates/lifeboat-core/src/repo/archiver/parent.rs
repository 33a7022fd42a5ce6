//! The previous snapshot of the same path: found, and its trees read
//! ahead of the walk, so that unchanged files are not read again.

use super::*;

/// The snapshot whose files are taken when unchanged: the one asked for,
/// or the latest of the same host, label and paths.
pub(super) fn find_parent(
    repo: &Repository<OpenStatus>,
    snap: &SnapshotFile,
    request: &ArchiveRequest,
) -> Option<SnapshotFile> {
    if !request.use_parent {
        return None;
    }
    if let Some(id) = &request.parent {
        return match repo.get_snapshot_from_str(id, |_| true) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!("parent snapshot {id}: {}", e.display_log());
                None
            }
        };
    }
    let snapshots = match crate::repo::readable_snapshots(repo) {
        Ok((snapshots, _)) => snapshots,
        Err(e) => {
            tracing::warn!("listing snapshots for a parent: {}", e.display_log());
            return None;
        }
    };
    snapshots
        .into_iter()
        .filter(|p| p.hostname == snap.hostname && p.label == snap.label && p.paths == snap.paths)
        .max_by(|a, b| a.time.cmp(&b.time))
}

/// The subtrees of a tree's directories, in name order, with their names.
pub(super) fn subtrees(tree: &Tree) -> Vec<(String, TreeId)> {
    tree.nodes
        .iter()
        .filter(|n| n.is_dir())
        .filter_map(|n| Some((n.name.clone(), n.subtree?)))
        .collect()
}

/// A tree of the previous snapshot, read ahead: where it is (the names
/// of the directories down to it), its id, and it (or why not).
pub(super) struct TreeAhead {
    pub(super) path: Vec<String>,
    pub(super) id: TreeId,
    pub(super) tree: Result<Tree>,
}

/// Reads the previous snapshot's trees ahead of the walk.
pub(super) struct TreeReader<'a> {
    pub(super) shared: &'a Shared,
    pub(super) backend: &'a Arc<dyn WriteBackend>,
    pub(super) cipher: &'a aes256ctr_poly1305aes::Aes256CtrPoly1305Aes,
}

impl TreeReader<'_> {
    /// Reads the trees below `roots` (the root's subtrees) depth first, in
    /// name order: the order in which the walk enters directories, since
    /// the source lists them sorted too. Paths in that order only grow.
    pub(super) fn run(&self, roots: Vec<(String, TreeId)>, out: &Sender<TreeAhead>) {
        let mut stack: Vec<(Vec<String>, TreeId)> = roots
            .into_iter()
            .rev()
            .map(|(name, id)| (vec![name], id))
            .collect();
        while let Some((path, id)) = stack.pop() {
            while self.shared.nodes_ahead.load(Ordering::Relaxed) > NODES_AHEAD {
                // Trees the walk will never take (a directory gone from the
                // source) count until it ends.
                if self.shared.stopped() || self.shared.walked.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            if self.shared.stopped() {
                return;
            }
            let tree = self.shared.known.tree(self.backend, self.cipher, id);
            if let Ok(tree) = &tree {
                self.shared
                    .nodes_ahead
                    .fetch_add(tree.nodes.len(), Ordering::Relaxed);
                stack.extend(subtrees(tree).into_iter().rev().map(|(name, sub)| {
                    let mut below = path.clone();
                    below.push(name);
                    (below, sub)
                }));
            }
            if out.send(TreeAhead { path, id, tree }).is_err() {
                return;
            }
        }
    }
}
