//! Pure: what was pushed and what a container runs — an image reference, a push, and whether
//! a push is a container image at all.

use serde::Serialize;

/// `[registry/]repository[:tag][@digest]`, as a container's `image` field holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub registry: Option<String>,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageRef {
    pub fn parse(image: &str) -> Option<ImageRef> {
        let (rest, digest) = match image.split_once('@') {
            Some((r, d)) => (r, Some(d.to_owned())),
            None => (image, None),
        };
        // A tag is after the last ':' that comes after the last '/'; an earlier ':' is a port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (
                &rest[..last_slash + i],
                Some(rest[last_slash + i + 1..].to_owned()),
            ),
            None => (rest, None),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (Some(first.to_owned()), path.to_owned())
            }
            _ => (None, name.to_owned()),
        };
        if repository.is_empty() || tag.as_deref() == Some("") {
            return None;
        }
        Some(ImageRef {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

/// The image that was pushed (or, for the scheduled reconcile, that a tag points at now).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Push {
    /// `<account>.dkr.ecr.<region>.amazonaws.com`
    pub registry: String,
    pub repository: String,
    pub tag: String,
    pub digest: String,
}

impl Push {
    pub fn ecr_registry(account: &str, region: &str) -> String {
        format!("{account}.dkr.ecr.{region}.amazonaws.com")
    }

    /// `(account, region)` of an ECR registry host, `None` for any other registry.
    pub fn ecr_parts(registry: &str) -> Option<(&str, &str)> {
        let rest = registry.strip_suffix(".amazonaws.com")?;
        let (account, region) = rest.split_once(".dkr.ecr.")?;
        let ok = account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && !region.is_empty()
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        ok.then_some((account, region))
    }

    pub fn pinned_image(&self) -> String {
        format!("{}/{}@{}", self.registry, self.repository, self.digest)
    }

    pub fn short_digest(&self) -> &str {
        let hex = self.digest.strip_prefix("sha256:").unwrap_or(&self.digest);
        &hex[..hex.len().min(12)]
    }
}

/// An OCI/Docker content digest as ECR issues it: `sha256:` and 64 lowercase hex characters.
/// Anything else (AWS's own sample event carries 60) must never be written into a workload.
pub fn valid_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Manifests a container runtime can run: an image manifest or a multi-arch index (whose digest
/// is the one to pin, so each node pulls its own platform).
const IMAGE_MANIFESTS: [&str; 5] = [
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];
/// An image manifest's config type; an attestation, signature, SBOM or Helm chart has another.
const IMAGE_CONFIGS: [&str; 2] = [
    "application/vnd.docker.container.image.v1+json",
    "application/vnd.oci.image.config.v1+json",
];

/// Why a push is not a runnable image (an attestation, a signature, another OCI artifact), from
/// the event's media types; `None` when it is one, or when the event does not say.
pub fn not_an_image(manifest: Option<&str>, artifact: Option<&str>) -> Option<String> {
    if let Some(m) = manifest
        && !IMAGE_MANIFESTS.contains(&m)
    {
        return Some(format!("manifest media type {m} is not a container image"));
    }
    match artifact {
        Some(a) if !IMAGE_CONFIGS.contains(&a) => Some(format!(
            "artifact media type {a} is an attestation, signature or other artifact, not a container image"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGISTRY: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
    const DIGEST: &str = "sha256:7f5b2640fe6fb4f46592dfd3410c4a79dac4f89e4782432e0378abcd1234abcd";

    #[test]
    fn image_references_parse_with_and_without_tag_digest_and_port() {
        let r = ImageRef::parse(&format!("{REGISTRY}/shop/api:latest")).unwrap();
        assert_eq!(
            (
                r.registry.as_deref(),
                r.repository.as_str(),
                r.tag.as_deref()
            ),
            (Some(REGISTRY), "shop/api", Some("latest"))
        );
        let r = ImageRef::parse(&format!("{REGISTRY}/shop/api@{DIGEST}")).unwrap();
        assert_eq!((r.tag, r.digest.as_deref()), (None, Some(DIGEST)));
        let r = ImageRef::parse(&format!("{REGISTRY}/shop/api:stable@{DIGEST}")).unwrap();
        assert_eq!(
            (r.tag.as_deref(), r.digest.as_deref()),
            (Some("stable"), Some(DIGEST))
        );
        let r = ImageRef::parse("registry.local:5000/team/app:1.2").unwrap();
        assert_eq!(
            (
                r.registry.as_deref(),
                r.repository.as_str(),
                r.tag.as_deref()
            ),
            (Some("registry.local:5000"), "team/app", Some("1.2"))
        );
        let r = ImageRef::parse("registry.local:5000/app").unwrap();
        assert_eq!(
            (r.registry.as_deref(), r.tag),
            (Some("registry.local:5000"), None)
        );
        let r = ImageRef::parse("nginx:1.27").unwrap();
        assert_eq!((r.registry, r.repository.as_str()), (None, "nginx"));
        let r = ImageRef::parse("library/nginx").unwrap();
        assert_eq!((r.registry, r.repository.as_str()), (None, "library/nginx"));
        assert_eq!(ImageRef::parse("app:"), None);
    }

    #[test]
    fn only_a_well_formed_sha256_digest_is_ever_pinned() {
        assert!(valid_digest(DIGEST));
        // AWS's sample ECR push event carries a 60-character digest.
        for bad in [
            "sha256:7f5b2640fe6fb4f46592dfd3410c4a79dac4f89e4782432e0378abcd1234",
            "sha256:7F5B2640FE6FB4F46592DFD3410C4A79DAC4F89E4782432E0378ABCD1234ABCD",
            "sha512:7f5b2640fe6fb4f46592dfd3410c4a79dac4f89e4782432e0378abcd1234abcd",
            "7f5b2640fe6fb4f46592dfd3410c4a79dac4f89e4782432e0378abcd1234abcd",
            "sha256:7f5b2640fe6fb4f46592dfd3410c4a79dac4f89e4782432e0378abcd1234abcg",
            "",
        ] {
            assert!(!valid_digest(bad), "{bad}");
        }
    }

    #[test]
    fn attestations_signatures_and_artifacts_are_not_images() {
        let oci = Some("application/vnd.oci.image.manifest.v1+json");
        let index = Some("application/vnd.oci.image.index.v1+json");
        assert_eq!(
            not_an_image(oci, Some("application/vnd.oci.image.config.v1+json")),
            None
        );
        assert_eq!(
            not_an_image(index, None),
            None,
            "a multi-arch index is pinned whole"
        );
        assert_eq!(
            not_an_image(
                Some("application/vnd.docker.distribution.manifest.v2+json"),
                None
            ),
            None
        );
        assert_eq!(
            not_an_image(None, None),
            None,
            "an event without media types"
        );
        for artifact in [
            "application/vnd.in-toto+json",
            "application/vnd.dev.cosign.artifact.sig.v1+json",
            "application/vnd.cncf.notary.signature",
            "application/vnd.cncf.helm.config.v1+json",
        ] {
            assert!(not_an_image(oci, Some(artifact)).is_some(), "{artifact}");
        }
        assert!(
            not_an_image(Some("application/vnd.oci.artifact.manifest.v1+json"), None).is_some()
        );
    }
}
