//! What `checkpoint --all` asks of containerd besides: every namespace,
//! and every container of one.

use containerd_client::services::v1::{
    containers_client::ContainersClient, Container, ListContainersRequest,
};

use super::{Containerd, CALL_TIMEOUT};
use crate::error::{Error, Result};

impl Containerd {
    /// containerd's namespaces (a connection in any namespace lists them).
    pub async fn namespaces(&self) -> Result<Vec<String>> {
        use containerd_client::services::v1::namespaces_client::NamespacesClient;
        use containerd_client::services::v1::ListNamespacesRequest;
        let mut n = NamespacesClient::new(self.channel.clone());
        let req = self.request(
            ListNamespacesRequest {
                filter: String::new(),
            },
            CALL_TIMEOUT,
        );
        let mut names: Vec<String> = n
            .list(req)
            .await
            .map_err(Error::containerd("list namespaces"))?
            .into_inner()
            .namespaces
            .into_iter()
            .map(|ns| ns.name)
            .collect();
        names.sort();
        Ok(names)
    }

    /// Every container of the namespace, oldest first.
    pub async fn containers(&self) -> Result<Vec<Container>> {
        let mut c = ContainersClient::new(self.channel.clone());
        let req = self.request(ListContainersRequest { filters: vec![] }, CALL_TIMEOUT);
        let mut list = c
            .list(req)
            .await
            .map_err(Error::containerd(format!(
                "list containers in namespace {}",
                self.namespace
            )))?
            .into_inner()
            .containers;
        list.sort_by_key(|c| c.created_at.as_ref().map(|t| (t.seconds, t.nanos)));
        Ok(list)
    }
}
