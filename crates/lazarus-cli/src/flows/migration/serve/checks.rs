//! What the receiver checks of an offer before the sender freezes
//! anything: the protocol, a name safe to pass on, the engine answers, the
//! name is free there, the same image is here. A refusal reaches the
//! sender as its error (of the same kind), the container untouched.

use super::super::{Offer, PROTOCOL};
use crate::engine::containerd::Containerd;
use crate::engine::docker::Docker;
use crate::engine::endpoints::Endpoints;
use crate::engine::{Engine, ImageFound};
use crate::error::{Error, Result};
use crate::flows::import;

/// What can be known before the source is frozen: the engine answers, the
/// name is free, the same image is here.
pub(super) async fn check(offer: &Offer, endpoints: &Endpoints) -> Result<()> {
    check_offer(offer)?;
    match offer.engine.as_str() {
        "docker" => {
            let docker = Docker::new(&endpoints.docker)?;
            if !docker.reachable().await {
                return Err(Error::DockerUnreachable {
                    address: endpoints.docker.clone(),
                    why: "the container came from Docker".into(),
                });
            }
            check_engine(offer, &docker).await
        }
        "containerd" => {
            let ns = &offer.namespace;
            lazarus_core::ids::check_identifier("containerd namespace", ns)?;
            let ctr = Containerd::connect(&endpoints.containerd, ns).await?;
            check_engine(offer, &ctr).await
        }
        other => Err(Error::Refused(format!(
            "the sender offered a container of engine {other:?}: only docker and containerd \
             are received"
        ))),
    }
}

/// The offer itself: the same protocol, a name safe to pass on.
pub(super) fn check_offer(offer: &Offer) -> Result<()> {
    if offer.protocol != PROTOCOL {
        return Err(Error::Refused(format!(
            "the sender speaks migration protocol {}, this host {PROTOCOL}: run the same Lazarus \
             version on both",
            offer.protocol
        )));
    }
    // Checked before the name reaches an engine, a URL or the guard's
    // command line.
    lazarus_core::ids::check_name("container name", &offer.name)?;
    Ok(())
}

/// The offer against the engine it names: the name is free there, and
/// the same image is here.
pub(super) async fn check_engine(offer: &Offer, engine: &impl Engine) -> Result<()> {
    let (name, ns) = (&offer.name, &offer.namespace);
    let docker = engine.kind() == "docker";
    if engine.exists(name).await? {
        return Err(Error::Conflict(match docker {
            true => format!(
                "a container named {name} already exists on the receiving host: migrate it \
                 with another --name"
            ),
            false => format!(
                "a container {name} already exists in namespace {ns} on the receiving host: \
                 migrate it with another --name"
            ),
        }));
    }
    let (image, digest) = (&offer.image, &offer.image_digest);
    match (engine.find_image(image, digest).await?, docker) {
        (ImageFound::Here(_), _) => Ok(()),
        (ImageFound::Different { found }, true) => {
            Err(import::image_refusal(image, digest, Some(&found)))
        }
        (ImageFound::Missing, true) => Err(import::image_refusal(image, digest, None)),
        (ImageFound::Missing, false) => Err(Error::NotFound(format!(
            "image {image} is not in namespace {ns} on the receiving host: pull or import it \
             there (ctr -n {ns} images pull/import), then migrate again"
        ))),
        (ImageFound::Different { found }, false) => Err(Error::Refused(format!(
            "image {image} on the receiving host is {found}, the container's is {digest}: make \
             them the same image, then migrate again"
        ))),
    }
}
