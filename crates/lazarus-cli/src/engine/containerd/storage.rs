//! What the CLI asks of containerd's storage: a snapshot's mounts (a
//! container's root filesystem, its overlay upper directory), a new
//! snapshot held by an expiring lease until a container refers to it, an
//! image's target and the content store's blobs.

use std::path::PathBuf;

use containerd_client::services::v1::snapshots::{
    snapshots_client::SnapshotsClient, MountsRequest, PrepareSnapshotRequest, RemoveSnapshotRequest,
};
use containerd_client::services::v1::{
    content_client::ContentClient, images_client::ImagesClient, GetImageRequest, ReadContentRequest,
};
use containerd_client::tonic;
use containerd_client::tonic::metadata::{Ascii, MetadataValue};
use containerd_client::types::Mount;

use super::{not_found_is_done, Containerd, CALL_TIMEOUT};
use crate::error::{Error, Result};

impl Containerd {
    /// The overlay upper directory of a snapshot: where the container's
    /// changes to its image live.
    pub async fn upper_dir(&self, snapshotter: &str, key: &str) -> Result<PathBuf> {
        let mounts = self.snapshot_mounts(snapshotter, key).await?;
        upper_of(&mounts).ok_or_else(|| {
            Error::Refused(format!(
                "snapshot {key} ({snapshotter}) is not an overlay with an upper directory \
                 ({mounts:?}); Lazarus carries root filesystem changes from overlayfs only"
            ))
        })
    }

    /// How a snapshot is mounted (a container's root filesystem).
    pub async fn snapshot_mounts(&self, snapshotter: &str, key: &str) -> Result<Vec<Mount>> {
        let mut s = SnapshotsClient::new(self.channel.clone());
        let req = self.request(
            MountsRequest {
                snapshotter: snapshotter.into(),
                key: key.into(),
            },
            CALL_TIMEOUT,
        );
        Ok(s.mounts(req)
            .await
            .map_err(Error::containerd(format!("mounts of snapshot {key}")))?
            .into_inner()
            .mounts)
    }

    /// An image's manifest-or-index descriptor, None when not on this host.
    pub async fn image_target(&self, name: &str) -> Result<Option<(String, String)>> {
        let mut i = ImagesClient::new(self.channel.clone());
        let req = self.request(GetImageRequest { name: name.into() }, CALL_TIMEOUT);
        match i.get(req).await {
            Ok(r) => Ok(r
                .into_inner()
                .image
                .and_then(|i| i.target)
                .map(|t| (t.media_type, t.digest))),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(Error::containerd(format!("image {name}"))(s)),
        }
    }

    /// A blob of the content store.
    pub async fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let mut c = ContentClient::new(self.channel.clone());
        let req = self.request(
            ReadContentRequest {
                digest: digest.into(),
                offset: 0,
                size: 0,
            },
            CALL_TIMEOUT,
        );
        let what = format!("read {digest}");
        let mut stream = c
            .read(req)
            .await
            .map_err(Error::containerd(&what))?
            .into_inner();
        let mut out = Vec::new();
        while let Some(chunk) = stream.message().await.map_err(Error::containerd(&what))? {
            out.extend_from_slice(&chunk.data);
        }
        Ok(out)
    }

    /// A new active snapshot on `parent`; returns its mounts.
    pub async fn prepare(&self, snapshotter: &str, key: &str, parent: &str) -> Result<Vec<Mount>> {
        let lease = self.expiring_lease(key).await?;
        let mut s = SnapshotsClient::new(self.channel.clone());
        let mut req = self.request(
            PrepareSnapshotRequest {
                snapshotter: snapshotter.into(),
                key: key.into(),
                parent: parent.into(),
                labels: Default::default(),
            },
            CALL_TIMEOUT,
        );
        req.metadata_mut().insert("containerd-lease", lease);
        Ok(s.prepare(req)
            .await
            .map_err(Error::containerd(format!(
                "prepare snapshot {key} on {parent}"
            )))?
            .into_inner()
            .mounts)
    }

    pub async fn remove_snapshot(&self, snapshotter: &str, key: &str) -> Result<()> {
        let mut s = SnapshotsClient::new(self.channel.clone());
        let req = self.request(
            RemoveSnapshotRequest {
                snapshotter: snapshotter.into(),
                key: key.into(),
            },
            CALL_TIMEOUT,
        );
        not_found_is_done(s.remove(req).await, &format!("remove snapshot {key}"))
    }

    /// A lease that ends by itself (containerd collects it after an
    /// hour). A snapshot prepared with no lease and no container record
    /// referring to it yet is garbage to containerd's collector, which any
    /// deletion may set off at once: a restore's snapshot was seen removed
    /// between its prepare and its task (the rootfs mount then failed with
    /// ENOENT). Held by the lease until the container refers to it.
    async fn expiring_lease(&self, what: &str) -> Result<MetadataValue<Ascii>> {
        use containerd_client::services::v1::leases_client::LeasesClient;
        let mut l = LeasesClient::new(self.channel.clone());
        let expire = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
        let req = self.request(
            containerd_client::services::v1::CreateRequest {
                id: String::new(),
                labels: [("containerd.io/gc.expire".to_string(), expire)].into(),
            },
            CALL_TIMEOUT,
        );
        let lease = l
            .create(req)
            .await
            .map_err(Error::containerd(format!("lease for {what}")))?
            .into_inner()
            .lease
            .map(|l| l.id)
            .unwrap_or_default();
        lease.parse().map_err(|_| {
            Error::Refused(format!(
                "containerd named a lease that cannot be sent back: {lease:?}"
            ))
        })
    }
}

/// The `upperdir=` of an overlay mount.
pub fn upper_of(mounts: &[Mount]) -> Option<PathBuf> {
    mounts
        .iter()
        .filter(|m| m.r#type == "overlay")
        .flat_map(|m| &m.options)
        .find_map(|o| o.strip_prefix("upperdir="))
        .map(PathBuf::from)
}
