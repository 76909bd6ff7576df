//! The Route53 hosted zone a load balancer's alias must name, from its hostname alone.
//!
//! An alias to a load balancer needs the load balancer's canonical hosted zone id. AWS publishes
//! one per region for Application and Classic Load Balancers and another for Network Load
//! Balancers ("Elastic Load Balancing endpoints and quotas", docs.aws.amazon.com/general/latest/
//! gr/elb.html). Reading it off the hostname needs no DescribeLoadBalancers call, works for
//! Classic Load Balancers (invisible to ELBv2) and for load balancers in another account.
//! Hostname forms: `[dualstack.][internal-]<name>-<id>.<region>.elb.amazonaws.com` (Classic,
//! ALB) and `<name>-<id>.elb.<region>.amazonaws.com` (NLB).

/// Commercial regions: (region, ALB and Classic zone, NLB zone). Checked against AWS's table
/// and the two public tools that keep a copy (terraform-provider-aws, external-dns); regions
/// missing from either are left to the API lookup.
const TABLE: &[(&str, &str, &str)] = &[
    ("af-south-1", "Z268VQBMOI5EKX", "Z203XCE67M25HM"),
    ("ap-east-1", "Z3DQVH9N71FHZ0", "Z12Y7K3UBGUAD1"),
    ("ap-northeast-1", "Z14GRHDCWA56QT", "Z31USIVHYNEOWT"),
    ("ap-northeast-2", "ZWKZPGTI48KDX", "ZIBE1TIR4HY56"),
    ("ap-northeast-3", "Z5LXEXXYW11ES", "Z1GWIQ4HH19I5X"),
    ("ap-south-1", "ZP97RAFLXTNZK", "ZVDDRBQ08TROA"),
    (
        "ap-south-2",
        "Z0173938T07WNTVAEPZN",
        "Z0711778386UTO08407HT",
    ),
    ("ap-southeast-1", "Z1LMS91P8CMLE5", "ZKVM4W9LS7TM"),
    ("ap-southeast-2", "Z1GM3OXH4ZPM65", "ZCT6FZBF4DROD"),
    (
        "ap-southeast-3",
        "Z08888821HLRG5A9ZRTER",
        "Z01971771FYVNCOVWJU1G",
    ),
    ("ca-central-1", "ZQSVJUPU6J1EY", "Z2EPGBW3API2WT"),
    ("eu-central-1", "Z215JYRZR1TBD5", "Z3F0SRJ5LGBH90"),
    (
        "eu-central-2",
        "Z06391101F2ZOEP8P5EB3",
        "Z02239872DOALSIDCX66S",
    ),
    ("eu-north-1", "Z23TAZ6LKFMNIO", "Z1UDT6IFJ4EJM"),
    ("eu-south-1", "Z3ULH7SSC9OV64", "Z23146JA1KNAFP"),
    (
        "eu-south-2",
        "Z0956581394HF5D5LXGAP",
        "Z1011216NVTVYADP1SSV",
    ),
    ("eu-west-1", "Z32O12XQLNTSW2", "Z2IFOLAFXWLO4F"),
    ("eu-west-2", "ZHURV8PSTC4K8", "ZD4D7Y8KGAS4G"),
    ("eu-west-3", "Z3Q77PNBQS71R4", "Z1CMS0P5QUZ6D5"),
    (
        "me-central-1",
        "Z08230872XQRWHG2XF6I",
        "Z00282643NTTLPANJJG2P",
    ),
    ("me-south-1", "ZS929ML54UICD", "Z3QSRYVP46NYYV"),
    ("sa-east-1", "Z2P70J7HTTTPLU", "ZTK26PT1VY4CU"),
    ("us-east-1", "Z35SXDOTRQ7X7K", "Z26RNL4JYFTOTI"),
    ("us-east-2", "Z3AADJGX6KTTL2", "ZLMOA37VPKANP"),
    ("us-west-1", "Z368ELLRRE2KJ0", "Z24FKFUX50B4VW"),
    ("us-west-2", "Z1H1FL5HABSF5", "Z18D5FSROUN65G"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Application or Classic Load Balancer (they share a zone per region).
    ApplicationOrClassic,
    Network,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canonical {
    pub zone_id: &'static str,
    pub region: String,
    pub kind: Kind,
    /// A Classic Load Balancer's `dualstack.` name answers AAAA too.
    pub dualstack: bool,
}

/// The canonical zone for a load balancer hostname, or `None` for any other name or a region
/// not in the table (then the API lookup, or a CNAME where one is allowed).
pub fn canonical(hostname: &str) -> Option<Canonical> {
    let host = hostname.trim_end_matches('.').to_ascii_lowercase();
    let dualstack = host.starts_with("dualstack.");
    let (region, kind) = if let Some(rest) = host.strip_suffix(".elb.amazonaws.com") {
        let (name, region) = rest.rsplit_once('.')?;
        (!name.is_empty()).then_some(())?;
        (region.to_owned(), Kind::ApplicationOrClassic)
    } else {
        let rest = host.strip_suffix(".amazonaws.com")?;
        let (name, region) = rest.rsplit_once(".elb.")?;
        (!name.is_empty() && !region.contains('.')).then_some(())?;
        (region.to_owned(), Kind::Network)
    };
    let &(_, alb, nlb) = TABLE.iter().find(|(r, _, _)| *r == region)?;
    Some(Canonical {
        zone_id: match kind {
            Kind::ApplicationOrClassic => alb,
            Kind::Network => nlb,
        },
        region,
        kind,
        dualstack,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_maps_each_hostname_form_to_its_zone() {
        for &(region, alb, nlb) in TABLE {
            for host in [
                format!("k8s-shop-web-0123456789.{region}.elb.amazonaws.com"),
                format!("internal-k8s-shop-api-42.{region}.elb.amazonaws.com"),
                format!("default-1854330541.{region}.elb.amazonaws.com."),
                format!(
                    "Default-1854330541.{}.ELB.amazonaws.com",
                    region.to_uppercase()
                ),
            ] {
                let c = canonical(&host).unwrap_or_else(|| panic!("{host}"));
                assert_eq!(
                    (c.zone_id, c.kind, c.region.as_str()),
                    (alb, Kind::ApplicationOrClassic, region),
                    "{host}"
                );
                assert!(!c.dualstack);
            }
            let dual = canonical(&format!("dualstack.web-1.{region}.elb.amazonaws.com")).unwrap();
            assert_eq!((dual.zone_id, dual.dualstack), (alb, true));
            for host in [
                format!("k8s-shop-nlb-0123456789abcdef.elb.{region}.amazonaws.com"),
                format!("a1b2c3-99.elb.{region}.amazonaws.com."),
            ] {
                let c = canonical(&host).unwrap_or_else(|| panic!("{host}"));
                assert_eq!(
                    (c.zone_id, c.kind, c.region.as_str()),
                    (nlb, Kind::Network, region),
                    "{host}"
                );
            }
        }
    }

    #[test]
    fn the_seeds_classic_load_balancer_is_known() {
        let c = canonical("default-1854330541.ap-northeast-1.elb.amazonaws.com").unwrap();
        assert_eq!(c.zone_id, "Z14GRHDCWA56QT");
    }

    #[test]
    fn other_names_and_unlisted_regions_are_left_to_the_api() {
        for host in [
            "shop.example.com",
            "elb.amazonaws.com",
            ".eu-west-1.elb.amazonaws.com",
            "x.elb.eu-west-1.amazonaws.com.evil.example",
            "lb-1.ap-southeast-7.elb.amazonaws.com",
            "lb-1.elb.mx-central-1.amazonaws.com",
            "lb-1.cn-north-1.elb.amazonaws.com.cn",
            "my-bucket.s3.eu-west-1.amazonaws.com",
            "d111111abcdef8.cloudfront.net",
        ] {
            assert_eq!(canonical(host), None, "{host}");
        }
    }

    #[test]
    fn regions_are_listed_once() {
        let mut regions: Vec<&str> = TABLE.iter().map(|r| r.0).collect();
        regions.sort();
        regions.dedup();
        assert_eq!(regions.len(), TABLE.len());
    }
}
