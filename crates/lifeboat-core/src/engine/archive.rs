//! Streams of a helper's files through the archive endpoints: a volume
//! read as a tar stream, a tar stream written into a volume.

use bollard::query_parameters::{DownloadFromContainerOptions, UploadToContainerOptions};
use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};

use super::{Engine, Helper, TRANSFER_TIMEOUT};
use crate::error::{Error, Result};

impl Engine {
    /// Streams `path` inside the helper as a tar archive.
    pub(crate) fn download(
        &self,
        helper: &Helper,
        path: &str,
    ) -> impl Stream<Item = Result<Bytes>> + Send + 'static {
        // The returned stream owns its request: it does not borrow the client.
        self.docker
            .clone()
            .with_timeout(TRANSFER_TIMEOUT)
            .download_from_container(
                &helper.id,
                Some(DownloadFromContainerOptions {
                    path: path.to_string(),
                }),
            )
            .map_err(|e| Error::engine("reading the volume through the engine", e))
    }

    /// Extracts a tar stream into `path` inside the helper, keeping the
    /// archive's owners (`copyUIDGID`).
    pub(crate) async fn upload(
        &self,
        helper: &Helper,
        path: &str,
        tar: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    ) -> Result<()> {
        self.upload_into(&helper.id, path, tar).await
    }

    /// Extracts a tar stream into `path` inside any container, running or
    /// not, keeping the archive's owners.
    pub(crate) async fn upload_into(
        &self,
        container: &str,
        path: &str,
        tar: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    ) -> Result<()> {
        let docker = self.docker.clone().with_timeout(TRANSFER_TIMEOUT);
        docker
            .upload_to_container(
                container,
                Some(UploadToContainerOptions {
                    path: path.to_string(),
                    copy_uidgid: Some("1".to_string()),
                    ..Default::default()
                }),
                bollard::body_try_stream(tar),
            )
            .await
            .map_err(|e| {
                Error::engine(
                    format!("writing into {path} of {container} through the engine"),
                    e,
                )
            })
    }
}
