//! The walk: entries taken in tree order, directories opened and closed,
//! files compared with the previous snapshot and sent to the workers,
//! and each directory's tree written once all its entries are done.

use super::*;

/// Counts for the snapshot's summary.
#[derive(Default)]
pub(super) struct Counts {
    pub(super) files_new: u64,
    pub(super) files_changed: u64,
    pub(super) files_unmodified: u64,
    pub(super) files: u64,
    pub(super) bytes: u64,
    pub(super) dirs_new: u64,
    pub(super) dirs_changed: u64,
    pub(super) dirs_unmodified: u64,
    pub(super) dirs: u64,
    pub(super) dir_bytes: u64,
}

impl Counts {
    pub(super) fn apply(&self, s: &mut rustic_core::repofile::SnapshotSummary) {
        s.files_new = self.files_new;
        s.files_changed = self.files_changed;
        s.files_unmodified = self.files_unmodified;
        s.total_files_processed = self.files;
        s.total_bytes_processed = self.bytes;
        s.dirs_new = self.dirs_new;
        s.dirs_changed = self.dirs_changed;
        s.dirs_unmodified = self.dirs_unmodified;
        s.total_dirs_processed = self.dirs;
        s.total_dirsize_processed = self.dir_bytes;
    }
}

/// A directory being built: its nodes in the source's order, some still
/// being read.
pub(super) struct Frame {
    /// Its node, in its parent's tree; `None` for the root.
    pub(super) node: Option<Node>,
    pub(super) name: OsString,
    /// The names of its node and of those above it, from the root's
    /// first child: where [`TreeReader`] finds the previous version.
    pub(super) path: Vec<String>,
    /// Where its node goes: the parent frame and slot.
    pub(super) up: Option<(usize, usize)>,
    pub(super) nodes: Vec<Option<Node>>,
    pub(super) waiting: usize,
    pub(super) closed: bool,
    /// The same directory in the previous snapshot, and how far its sorted
    /// nodes have been looked through.
    pub(super) before: Option<Tree>,
    pub(super) before_id: Option<TreeId>,
    pub(super) cursor: usize,
}

impl Frame {
    /// The previous snapshot's node of this name.
    pub(super) fn before(&mut self, name: &str) -> Option<&Node> {
        let nodes = &self.before.as_ref()?.nodes;
        while let Some(node) = nodes.get(self.cursor) {
            match node.name.as_str().cmp(name) {
                std::cmp::Ordering::Less => self.cursor += 1,
                std::cmp::Ordering::Equal => return Some(node),
                std::cmp::Ordering::Greater => return None,
            }
        }
        None
    }
}

/// The walk of the source, on the caller's thread.
pub(super) struct Walk<'a, O> {
    pub(super) shared: &'a Shared,
    pub(super) jobs: Sender<Vec<Job<O>>>,
    /// Files for the next batch, and their size.
    pub(super) pending: Vec<Job<O>>,
    pub(super) pending_bytes: u64,
    /// Each file goes to a worker alone (see [`ArchiveRequest::streams`]).
    pub(super) file_per_batch: bool,
    pub(super) done: Receiver<Vec<Done>>,
    pub(super) blobs: Sender<Vec<Encoded>>,
    pub(super) codec: Codec,
    pub(super) backend: &'a Arc<dyn WriteBackend>,
    pub(super) cipher: &'a aes256ctr_poly1305aes::Aes256CtrPoly1305Aes,
    /// The previous snapshot's trees as [`TreeReader`] reads them; `None`
    /// once it has no more.
    pub(super) trees_ahead: Option<Receiver<TreeAhead>>,
    /// A tree read ahead for a directory further on.
    pub(super) tree_passed: Option<TreeAhead>,
    /// Every directory met so far, by the index jobs and children know it
    /// by; a finished one's slot is emptied. Boxed: an emptied slot then
    /// takes a pointer's room, not a frame's (hundreds of bytes), for each
    /// of a volume's directories until the backup ends.
    pub(super) frames: Vec<Option<Box<Frame>>>,
    /// The open directories, outermost first.
    pub(super) stack: Vec<usize>,
    pub(super) root: Option<TreeId>,
    pub(super) counts: Counts,
}

/// Whether a file is as it was in the previous snapshot: same type, size,
/// modification time, change time (when both have one) and inode (when
/// both have one).
pub(super) fn unchanged(before: &Node, now: &Node) -> bool {
    let (b, n) = (&before.meta, &now.meta);
    before.node_type == now.node_type
        && b.size == n.size
        && b.mtime == n.mtime
        && b.ctime.zip(n.ctime).is_none_or(|(x, y)| x == y)
        && (b.inode == 0 || n.inode == 0 || b.inode == n.inode)
}

impl<O: Open> Walk<'_, O> {
    pub(super) fn run(
        &mut self,
        entries: impl Iterator<Item = EntryResult<O>>,
        request: &ArchiveRequest,
        parent: Option<Tree>,
    ) -> Result<TreeId> {
        let root = self.open_frame(None, OsString::new(), None);
        if let Some(frame) = self.frames[root].as_mut() {
            frame.before = parent;
        }
        for entry in entries {
            if self.shared.stopped() {
                break;
            }
            if request.progress.stop_requested() {
                break;
            }
            let Entry { path, node, open } = match entry {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!("skipping an entry: {e}");
                    continue;
                }
            };
            let snapshot_path = match path.strip_prefix(&request.base) {
                Ok(rest) => request.snapshot_path.join(rest),
                Err(_) => path,
            };
            let mut names = names(&snapshot_path);
            let is_dir = node.is_dir();
            if !is_dir {
                names.pop();
            }
            self.enter(&names, is_dir.then_some(node.clone()))?;
            if !is_dir {
                self.add(node, open)?;
            }
            self.collect(false)?;
        }
        self.send_pending()?;
        while let Some(top) = self.stack.pop() {
            self.close(top)?;
        }
        while self.root.is_none() {
            if self.shared.stopped() {
                break;
            }
            self.collect(true)?;
        }
        match (self.shared.failure(), self.root) {
            (Some(failure), _) => Err(failure),
            (None, Some(root)) => Ok(root),
            (None, None) => Err(Error::Other("the archive stopped".to_string())),
        }
    }

    /// Makes the open directories those of `names`, closing the others and
    /// opening the missing ones; the last is `dir`'s own node, when the
    /// entry is a directory.
    pub(super) fn enter(&mut self, names: &[OsString], dir: Option<Node>) -> Result<()> {
        // The root frame has no name: the stack's depth below it is the
        // path's length.
        let mut keep = 1;
        while keep < self.stack.len()
            && keep - 1 < names.len()
            && self.frames[self.stack[keep]]
                .as_ref()
                .is_some_and(|f| f.name == names[keep - 1])
        {
            keep += 1;
        }
        if dir.is_some() {
            // A directory entry opens its own frame, even if one of that
            // name is open (it is then closed first); the root stays.
            keep = keep.min(names.len()).max(1);
        }
        while self.stack.len() > keep {
            if let Some(top) = self.stack.pop() {
                self.close(top)?;
            }
        }
        let missing = names.len() + 1 - self.stack.len().min(names.len() + 1);
        for (i, name) in names[names.len() - missing..].iter().enumerate() {
            let last = i + 1 == missing;
            let node = match (&dir, last) {
                (Some(node), true) => node.clone(),
                _ => Node::new_node(
                    name,
                    NodeType::Dir,
                    Metadata {
                        mode: Some(0o755),
                        ..Default::default()
                    },
                ),
            };
            let parent = *self
                .stack
                .last()
                .ok_or_else(|| Error::Other("no root".to_string()))?;
            let slot = {
                let frame = self.frame(parent)?;
                frame.nodes.push(None);
                frame.waiting += 1;
                frame.nodes.len() - 1
            };
            // The previous snapshot's directory of that name.
            let parent_frame = self.frame(parent)?;
            let before_id = parent_frame
                .before(&node.name)
                .filter(|b| b.is_dir())
                .and_then(|b| b.subtree);
            let mut path = parent_frame.path.clone();
            path.push(node.name.clone());
            let before = before_id.and_then(|id| {
                self.read_ahead(&path, id).or_else(|| {
                    self.shared
                        .known
                        .tree(self.backend, self.cipher, id)
                        .inspect_err(|e| tracing::warn!("previous snapshot: {e}"))
                        .ok()
                })
            });
            let index = self.open_frame(Some(node), name.clone(), Some((parent, slot)));
            let frame = self.frame(index)?;
            frame.path = path;
            frame.before = before;
            frame.before_id = before_id;
        }
        Ok(())
    }

    /// The tree `id` of the directory at `path`, from [`TreeReader`]:
    /// `None` when it has none for it (it could not read it, or it has
    /// passed it), and the walk reads it itself. The trees of paths before
    /// `path` are of directories the walk passed over; one further on
    /// waits for its turn.
    pub(super) fn read_ahead(&mut self, path: &[String], id: TreeId) -> Option<Tree> {
        loop {
            let ahead = match self.tree_passed.take() {
                Some(ahead) => ahead,
                None => {
                    let received = self.trees_ahead.as_ref()?.recv();
                    let Ok(ahead) = received else {
                        self.trees_ahead = None;
                        return None;
                    };
                    if let Ok(tree) = &ahead.tree {
                        self.shared
                            .nodes_ahead
                            .fetch_sub(tree.nodes.len(), Ordering::Relaxed);
                    }
                    ahead
                }
            };
            match ahead.path.as_slice().cmp(path) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => {
                    return ahead.tree.ok().filter(|_| ahead.id == id);
                }
                std::cmp::Ordering::Greater => {
                    self.tree_passed = Some(ahead);
                    return None;
                }
            }
        }
    }

    pub(super) fn open_frame(
        &mut self,
        node: Option<Node>,
        name: OsString,
        up: Option<(usize, usize)>,
    ) -> usize {
        self.frames.push(Some(Box::new(Frame {
            node,
            name,
            path: Vec::new(),
            up,
            nodes: Vec::new(),
            waiting: 0,
            closed: false,
            before: None,
            before_id: None,
            cursor: 0,
        })));
        let index = self.frames.len() - 1;
        self.stack.push(index);
        index
    }

    pub(super) fn frame(&mut self, index: usize) -> Result<&mut Frame> {
        self.frames
            .get_mut(index)
            .and_then(Option::as_mut)
            .map(|frame| &mut **frame)
            .ok_or_else(|| Error::Other("a directory was finished twice".to_string()))
    }

    /// Adds a non-directory entry to the innermost open directory: taken
    /// from the previous snapshot when unchanged, else read by a worker.
    pub(super) fn add(&mut self, mut node: Node, open: Option<O>) -> Result<()> {
        let index = *self
            .stack
            .last()
            .ok_or_else(|| Error::Other("no root".to_string()))?;
        let known = &self.shared.known;
        let frame = self.frames[index]
            .as_mut()
            .ok_or_else(|| Error::Other("a closed directory".to_string()))?;
        let before = frame.before(&node.name).cloned();
        self.counts.files += 1;
        let same = before.as_ref().filter(|b| unchanged(b, &node));
        match (&before, same) {
            (None, _) => self.counts.files_new += 1,
            (Some(_), None) => self.counts.files_changed += 1,
            (Some(_), Some(_)) => self.counts.files_unmodified += 1,
        }
        if !node.is_file() {
            self.counts.bytes += node.meta.size;
            frame.nodes.push(Some(node));
            return Ok(());
        }
        if let Some(content) = same
            .and_then(|b| b.content.as_ref())
            .filter(|c| c.iter().all(|id| known.has_data(&BlobId::from(**id))))
        {
            node.content = Some(content.clone());
            self.counts.bytes += node.meta.size;
            self.shared
                .progress
                .bytes_done
                .fetch_add(node.meta.size, Ordering::Relaxed);
            frame.nodes.push(Some(node));
            return Ok(());
        }
        frame.nodes.push(None);
        frame.waiting += 1;
        let slot = frame.nodes.len() - 1;
        self.pending_bytes += node.meta.size;
        self.pending.push(Job {
            frame: index,
            slot,
            node,
            open,
        });
        if self.file_per_batch
            || self.pending_bytes >= BATCH_BYTES
            || self.pending.len() >= BATCH_FILES
        {
            self.send_pending()?;
        }
        Ok(())
    }

    /// Hands the pending files to the workers, taking in finished files
    /// while they are all busy.
    pub(super) fn send_pending(&mut self) -> Result<()> {
        self.pending_bytes = 0;
        let mut job = Some(std::mem::take(&mut self.pending)).filter(|p| !p.is_empty());
        while let Some(pending) = job.take() {
            let mut select = Select::new();
            let send = select.send(&self.jobs);
            select.recv(&self.done);
            let operation = select.select();
            if operation.index() == send {
                operation
                    .send(&self.jobs, pending)
                    .map_err(|_| Error::Other("the workers stopped".to_string()))?;
            } else {
                let done = operation.recv(&self.done);
                job = Some(pending);
                if let Ok(done) = done {
                    self.finished(done)?;
                }
            }
        }
        Ok(())
    }

    /// Takes in finished files: those ready, or (with `wait`) at least one
    /// batch.
    pub(super) fn collect(&mut self, wait: bool) -> Result<()> {
        if wait {
            match self.done.recv() {
                Ok(done) => self.finished(done)?,
                Err(_) => {
                    self.shared
                        .fail(&Error::Other("the workers stopped".to_string()));
                    return Ok(());
                }
            }
        }
        while let Ok(done) = self.done.try_recv() {
            self.finished(done)?;
        }
        Ok(())
    }

    pub(super) fn finished(&mut self, batch: Vec<Done>) -> Result<()> {
        batch
            .into_iter()
            .try_for_each(|done| self.finished_file(done))
    }

    pub(super) fn finished_file(&mut self, done: Done) -> Result<()> {
        let node = match done.node {
            Ok(node) => {
                self.counts.bytes += node.meta.size;
                Some(node)
            }
            Err(e) => {
                // The source recorded what matters (a file that vanished,
                // one it could not read); the node is left out, as the
                // repository library does.
                tracing::warn!("leaving out a file: {e}");
                None
            }
        };
        self.fill(done.frame, done.slot, node)
    }

    /// Puts a node in its slot; a closed directory with every node in is
    /// finished, and its own node put in its parent's slot, and so on up.
    /// A loop, not a recursion: a file finished last at the bottom of a
    /// directory chain thousands deep finishes them all, and the stack of
    /// the thread it runs on is small.
    pub(super) fn fill(&mut self, index: usize, slot: usize, node: Option<Node>) -> Result<()> {
        let (mut index, mut slot, mut node) = (index, slot, node);
        loop {
            let frame = self.frame(index)?;
            if let Some(place) = frame.nodes.get_mut(slot) {
                *place = node;
            }
            frame.waiting = frame.waiting.saturating_sub(1);
            if !frame.closed || frame.waiting > 0 {
                return Ok(());
            }
            match self.finish(index)? {
                Some((parent, parent_slot, dir)) => {
                    (index, slot, node) = (parent, parent_slot, Some(dir));
                }
                None => return Ok(()),
            }
        }
    }

    pub(super) fn close(&mut self, index: usize) -> Result<()> {
        let frame = self.frame(index)?;
        frame.closed = true;
        if frame.waiting == 0
            && let Some((parent, slot, dir)) = self.finish(index)?
        {
            self.fill(parent, slot, Some(dir))?;
        }
        Ok(())
    }

    /// Stores a finished directory's tree; returns its node and where it
    /// goes in its parent (`None` for the root).
    pub(super) fn finish(&mut self, index: usize) -> Result<Option<(usize, usize, Node)>> {
        let frame = *self
            .frames
            .get_mut(index)
            .and_then(Option::take)
            .ok_or_else(|| Error::Other("a directory was finished twice".to_string()))?;
        let tree = Tree {
            nodes: frame.nodes.into_iter().flatten().collect(),
        };
        let (bytes, id) = tree
            .serialize()
            .map_err(|e| Error::Other(format!("writing a tree: {e}")))?;
        self.counts.dirs += 1;
        self.counts.dir_bytes += bytes.len() as u64;
        match frame.before_id {
            Some(before) if before == id => self.counts.dirs_unmodified += 1,
            Some(_) => self.counts.dirs_changed += 1,
            None if frame.up.is_some() => self.counts.dirs_new += 1,
            None => {}
        }
        if self.shared.claim(BlobId::from(*id), BlobType::Tree) {
            let blob = self
                .codec
                .encode(BlobType::Tree, pack::hash(&bytes), &bytes)?;
            if self.blobs.send(vec![blob]).is_err() {
                let why = Error::Other("the packer stopped".to_string());
                self.shared.fail(&why);
                return Err(why);
            }
        }
        match (frame.up, frame.node) {
            (Some((parent, slot)), Some(mut node)) => {
                node.subtree = Some(id);
                Ok(Some((parent, slot, node)))
            }
            _ => {
                self.root = Some(id);
                Ok(None)
            }
        }
    }
}

/// The names of a path's normal components.
pub(super) fn names(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            _ => None,
        })
        .collect()
}
