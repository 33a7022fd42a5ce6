//! The workers: whole files read, chunked, hashed and encoded, a batch
//! at a time, their new blobs sent on to the packer.

use super::*;

/// A file to read, and where its node goes.
pub(super) struct Job<O> {
    pub(super) frame: usize,
    pub(super) slot: usize,
    pub(super) node: Node,
    pub(super) open: Option<O>,
}

/// A file read: its node with its content, or why it is left out.
pub(super) struct Done {
    pub(super) frame: usize,
    pub(super) slot: usize,
    pub(super) node: std::result::Result<Node, String>,
}

/// Stored blobs on their way to the packer, in batches.
pub(super) struct Outbox<'a> {
    pub(super) packer: &'a Sender<Vec<Encoded>>,
    pub(super) batch: Vec<Encoded>,
    pub(super) bytes: u64,
}

impl<'a> Outbox<'a> {
    pub(super) fn new(packer: &'a Sender<Vec<Encoded>>) -> Self {
        Self {
            packer,
            batch: Vec::new(),
            bytes: 0,
        }
    }

    pub(super) fn push(&mut self, blob: Encoded) -> std::result::Result<(), String> {
        self.bytes += blob.bytes.len() as u64;
        self.batch.push(blob);
        if self.bytes >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    pub(super) fn flush(&mut self) -> std::result::Result<(), String> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.bytes = 0;
        self.packer
            .send(std::mem::take(&mut self.batch))
            .map_err(|_| "the packer stopped".to_string())
    }
}

/// A worker: batches of whole files, one file at a time.
pub(super) fn work<O: Open>(
    shared: &Shared,
    mut codec: Codec,
    jobs: &Receiver<Vec<Job<O>>>,
    done: &Sender<Vec<Done>>,
    blobs: &Sender<Vec<Encoded>>,
) {
    let mut outbox = Outbox::new(blobs);
    for batch in jobs {
        let mut finished = Vec::with_capacity(batch.len());
        for job in batch {
            let node = if shared.stopped() {
                Err("stopped".to_string())
            } else {
                read_file(shared, &mut codec, job.node, job.open, &mut outbox)
            };
            finished.push(Done {
                frame: job.frame,
                slot: job.slot,
                node,
            });
        }
        // The files' blobs are on their way before the files are done.
        if let Err(e) = outbox.flush() {
            shared.fail(&Error::Other(e));
        }
        if done.send(finished).is_err() {
            return;
        }
    }
}

pub(super) fn read_file<O: Open>(
    shared: &Shared,
    codec: &mut Codec,
    mut node: Node,
    open: Option<O>,
    blobs: &mut Outbox<'_>,
) -> std::result::Result<Node, String> {
    let reader = open
        .ok_or_else(|| "no content to read".to_string())?
        .open()
        .map_err(|e| e.to_string())?;
    let mut chunker = Chunker::new(reader, &shared.cutting, node.meta.size);
    let mut content = Vec::new();
    let mut size = 0;
    while let Some(chunk) = chunker.next_chunk().map_err(|e| e.to_string())? {
        if shared.stopped() {
            return Err("stopped".to_string());
        }
        size += chunk.len() as u64;
        let raw = pack::hash(chunk);
        let id = Id::new(raw);
        shared
            .progress
            .bytes_done
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        if shared.claim(BlobId::from(id), BlobType::Data) {
            // From here other files count on this blob being stored: any
            // failure to store it fails the whole snapshot.
            let stored = codec
                .encode(BlobType::Data, raw, chunk)
                .map_err(|e| e.to_string())
                .and_then(|blob| blobs.push(blob));
            if let Err(e) = stored {
                shared.fail(&Error::Other(e.clone()));
                return Err(e);
            }
        }
        content.push(DataId::from(id));
    }
    node.content = Some(content);
    // What was read, not what the listing said: a dump streams with no
    // size known in advance, and a live file may grow or shrink while it
    // is read.
    node.meta.size = size;
    Ok(node)
}
