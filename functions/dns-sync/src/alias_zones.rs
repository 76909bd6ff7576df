//! The Route53 hosted zone an alias must name, from the target's hostname alone.
//!
//! An alias needs its target's canonical hosted zone id. Reading it off the hostname needs no
//! DescribeLoadBalancers call, works for Classic Load Balancers (invisible to ELBv2) and for
//! targets in other accounts. The forms:
//! - Application and Classic Load Balancers: `[dualstack.][internal-]<name>-<id>.<region>.elb.
//!   amazonaws.com` (`.com.cn` in China); Network Load Balancers: `<name>-<id>.elb.<region>.
//!   amazonaws.com`. One zone per region and kind: AWS's "Elastic Load Balancing endpoints and
//!   quotas" (docs.aws.amazon.com/general/latest/gr/elb.html; China and GovCloud rows from the
//!   same table of the partition's docs), cross-checked with the copies external-dns
//!   (provider/aws/aws.go) and terraform-provider-aws keep.
//! - CloudFront distributions (`<id>.cloudfront.net`, edge-optimized API Gateway APIs too):
//!   Z2FDTNDATAQYW2; Global Accelerator (`<id>.awsglobalaccelerator.com`): Z2BJ6XQ5FK7U4H. Both
//!   fixed, from Route53's API reference (AliasTarget, HostedZoneId).
//! - VPC interface endpoints (`vpce-<id>[-<az>].<service>.<region>.vpce.amazonaws.com`): one zone
//!   per region, the `HostedZoneId` DescribeVpcEndpoints reports in `DnsEntries`, as collected
//!   by external-dns (kubernetes-sigs/external-dns#3429); a region not listed is left to a CNAME.

/// (region, ALB and Classic zone, NLB zone): every region Route53 serves records for
/// (`ResourceRecordSetRegion`) but the European Sovereign Cloud, whose partition (`amazonaws.eu`)
/// has its own endpoints and publishes no table yet (left to the API lookup or a CNAME).
const LOAD_BALANCERS: &[(&str, &str, &str)] = &[
    ("af-south-1", "Z268VQBMOI5EKX", "Z203XCE67M25HM"),
    ("ap-east-1", "Z3DQVH9N71FHZ0", "Z12Y7K3UBGUAD1"),
    ("ap-east-2", "Z02789141MW7T1WBU19PO", "Z09176273OC2HWIAUNYW"),
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
    (
        "ap-southeast-4",
        "Z09517862IB2WZLPXG76F",
        "Z01156963G8MIIL7X90IV",
    ),
    (
        "ap-southeast-5",
        "Z06010284QMVVW7WO5J",
        "Z026317210H9ACVTRO6FB",
    ),
    (
        "ap-southeast-6",
        "Z023301818UFJ50CIO0MV",
        "Z01392953RKV2Q3RBP0KU",
    ),
    (
        "ap-southeast-7",
        "Z0390008CMBRTHFGWBCB",
        "Z054363131YWATEMWRG5L",
    ),
    ("ca-central-1", "ZQSVJUPU6J1EY", "Z2EPGBW3API2WT"),
    (
        "ca-west-1",
        "Z06473681N0SF6OS049SD",
        "Z02754302KBB00W2LKWZ9",
    ),
    ("cn-north-1", "Z1GDH35T77C1KE", "Z3QFB96KMJ7ED6"),
    ("cn-northwest-1", "ZM7IZAIOVVDZF", "ZQEIKTCZ8352D"),
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
        "il-central-1",
        "Z09170902867EHPV2DABU",
        "Z0313266YDI6ZRHTGQY4",
    ),
    (
        "me-central-1",
        "Z08230872XQRWHG2XF6I",
        "Z00282643NTTLPANJJG2P",
    ),
    ("me-south-1", "ZS929ML54UICD", "Z3QSRYVP46NYYV"),
    (
        "mx-central-1",
        "Z023552324OKD1BB28BH5",
        "Z02031231H3ID6HYJ9A7U",
    ),
    ("sa-east-1", "Z2P70J7HTTTPLU", "ZTK26PT1VY4CU"),
    ("us-east-1", "Z35SXDOTRQ7X7K", "Z26RNL4JYFTOTI"),
    ("us-east-2", "Z3AADJGX6KTTL2", "ZLMOA37VPKANP"),
    ("us-gov-east-1", "Z166TLBEWOO7G0", "Z1ZSMQQ6Q24QQ8"),
    ("us-gov-west-1", "Z33AYJ8TM3BH4J", "ZMG1MZ2THAWF1"),
    ("us-west-1", "Z368ELLRRE2KJ0", "Z24FKFUX50B4VW"),
    ("us-west-2", "Z1H1FL5HABSF5", "Z18D5FSROUN65G"),
];

/// Interface VPC endpoints' zone by region (see the module docs).
const VPC_ENDPOINTS: &[(&str, &str)] = &[
    ("af-south-1", "Z09302161J80N9A7UTP7U"),
    ("ap-east-1", "Z2LIHJ7PKBEMWN"),
    ("ap-northeast-1", "Z2E726K9Y6RL4W"),
    ("ap-northeast-2", "Z27UANNT0PRK1T"),
    ("ap-northeast-3", "Z376B5OMM2JZL2"),
    ("ap-south-1", "Z2KVTB3ZLFM7JR"),
    ("ap-south-2", "Z0952991RWSF5AHIQDIY"),
    ("ap-southeast-1", "Z18LLCSTV4NVNL"),
    ("ap-southeast-2", "ZDK2GCRPAFKGO"),
    ("ap-southeast-3", "Z03881013RZ9BYYZO8N5W"),
    ("ap-southeast-4", "Z07508191CO1RNBX3X3AU"),
    ("ca-central-1", "ZRCXCF510Y6P9"),
    ("eu-central-1", "Z273ZU8SZ5RJPC"),
    ("eu-central-2", "Z045369019J4FUQ4S272E"),
    ("eu-north-1", "Z3OWWK6JFDEDGC"),
    ("eu-south-1", "Z2A5FDNRLY7KZG"),
    ("eu-south-2", "Z014396544HENR57XQCJ"),
    ("eu-west-1", "Z38GZ743OKFT7T"),
    ("eu-west-2", "Z7K1066E3PUKB"),
    ("eu-west-3", "Z1DWHTMFP0WECP"),
    ("me-central-1", "Z07122992YCEUCB9A9570"),
    ("me-south-1", "Z3B95P3VBGEQGY"),
    ("sa-east-1", "Z2LXUWEVLCVZIB"),
    ("us-east-1", "Z7HUB22UULQXV"),
    ("us-east-2", "ZC8PG0KIFKBRI"),
    ("us-gov-east-1", "Z2MU5TEIGO9WXB"),
    ("us-gov-west-1", "Z12529ZODG2B6H"),
    ("us-west-1", "Z12I86A8N7VCZO"),
    ("us-west-2", "Z1YSA3EXCYUU9Z"),
];

/// Route53's AliasTarget reference: the fixed zones of the global services.
const CLOUDFRONT: &str = "Z2FDTNDATAQYW2";
const GLOBAL_ACCELERATOR: &str = "Z2BJ6XQ5FK7U4H";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Application or Classic Load Balancer (they share a zone per region).
    ApplicationOrClassic,
    Network,
    CloudFront,
    GlobalAccelerator,
    VpcEndpoint,
}

impl Kind {
    pub fn is_load_balancer(self) -> bool {
        matches!(self, Kind::ApplicationOrClassic | Kind::Network)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canonical {
    pub zone_id: &'static str,
    /// `None` for the global services.
    pub region: Option<String>,
    pub kind: Kind,
    /// A `dualstack.` name answers AAAA too.
    pub dualstack: bool,
}

/// The DNS suffix of a region's partition (China's is `amazonaws.com.cn`).
fn suffix(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    }
}

/// The canonical zone for an alias target hostname, or `None` for any other name, or a region
/// not in the tables (then the API lookup, or a CNAME where one is allowed).
pub fn canonical(hostname: &str) -> Option<Canonical> {
    let host = hostname.trim_end_matches('.').to_ascii_lowercase();
    let dualstack = host.starts_with("dualstack.");
    let global = |kind, zone_id| {
        Some(Canonical {
            zone_id,
            region: None,
            kind,
            dualstack,
        })
    };
    if let Some(id) = host.strip_suffix(".cloudfront.net") {
        return (is_label(id))
            .then_some(())
            .and_then(|_| global(Kind::CloudFront, CLOUDFRONT));
    }
    if let Some(id) = host.strip_suffix(".awsglobalaccelerator.com") {
        let id = id.strip_prefix("dualstack.").unwrap_or(id);
        return id
            .split('.')
            .all(is_label)
            .then_some(())
            .and_then(|_| global(Kind::GlobalAccelerator, GLOBAL_ACCELERATOR));
    }
    let (region, kind) = load_balancer_region(&host).or_else(|| vpce_region(&host))?;
    let zone_id = match kind {
        Kind::VpcEndpoint => VPC_ENDPOINTS.iter().find(|(r, _)| *r == region)?.1,
        _ => {
            let &(_, alb, nlb) = LOAD_BALANCERS.iter().find(|(r, _, _)| *r == region)?;
            if kind == Kind::Network { nlb } else { alb }
        }
    };
    Some(Canonical {
        zone_id,
        region: Some(region),
        kind,
        dualstack,
    })
}

fn is_label(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// `<name>.<region>.elb.<suffix>` (ALB, Classic) or `<name>.elb.<region>.<suffix>` (NLB), with
/// the suffix of that region's partition.
fn load_balancer_region(host: &str) -> Option<(String, Kind)> {
    for base in ["amazonaws.com", "amazonaws.com.cn"] {
        let Some(rest) = host.strip_suffix(&format!(".{base}")) else {
            continue;
        };
        let found = if let Some(rest) = rest.strip_suffix(".elb") {
            let (name, region) = rest.rsplit_once('.')?;
            (!name.is_empty()).then(|| (region.to_owned(), Kind::ApplicationOrClassic))
        } else {
            let (name, region) = rest.rsplit_once(".elb.")?;
            (!name.is_empty() && !region.contains('.')).then(|| (region.to_owned(), Kind::Network))
        };
        return found.filter(|(region, _)| suffix(region) == base);
    }
    None
}

/// `vpce-<id>[-<az>].<service>.<region>.vpce.amazonaws.com`.
fn vpce_region(host: &str) -> Option<(String, Kind)> {
    let rest = host.strip_suffix(".vpce.amazonaws.com")?;
    let (name, region) = rest.rsplit_once('.')?;
    (name.starts_with("vpce-") && name.split('.').all(is_label))
        .then(|| (region.to_owned(), Kind::VpcEndpoint))
}

#[cfg(test)]
mod tests {
    use aws_sdk_route53::types::ResourceRecordSetRegion;

    use super::*;

    fn lb(host: &str) -> (&'static str, Kind, String) {
        let c = canonical(host).unwrap_or_else(|| panic!("{host}"));
        (c.zone_id, c.kind, c.region.unwrap_or_default())
    }

    #[test]
    fn every_row_maps_each_hostname_form_to_its_zone() {
        for &(region, alb, nlb) in LOAD_BALANCERS {
            let base = suffix(region);
            for host in [
                format!("k8s-shop-web-0123456789.{region}.elb.{base}"),
                format!("internal-k8s-shop-api-42.{region}.elb.{base}"),
                format!("default-1854330541.{region}.elb.{base}."),
                format!("Default-1854330541.{}.ELB.{base}", region.to_uppercase()),
            ] {
                let want = (alb, Kind::ApplicationOrClassic, region.to_owned());
                assert_eq!(lb(&host), want, "{host}");
                assert!(!canonical(&host).unwrap().dualstack);
            }
            let dual = canonical(&format!("dualstack.web-1.{region}.elb.{base}")).unwrap();
            assert_eq!((dual.zone_id, dual.dualstack), (alb, true));
            for host in [
                format!("k8s-shop-nlb-0123456789abcdef.elb.{region}.{base}"),
                format!("a1b2c3-99.elb.{region}.{base}."),
            ] {
                assert_eq!(lb(&host), (nlb, Kind::Network, region.to_owned()), "{host}");
            }
        }
    }

    /// The list AWS ships in the SDK (Route53's own region enum) is the reference: a region it
    /// knows and the table does not would silently get a CNAME, or nothing at an apex.
    #[test]
    fn no_region_route53_lists_is_missing() {
        // The European Sovereign Cloud's partition publishes no ELB zone table (module docs).
        let not_published = ["eusc-de-east-1"];
        let missing: Vec<&str> = ResourceRecordSetRegion::values()
            .iter()
            .copied()
            .filter(|r| !not_published.contains(r))
            .filter(|r| !LOAD_BALANCERS.iter().any(|(t, _, _)| t == r))
            .collect();
        assert!(missing.is_empty(), "not in the table: {missing:?}");
        for r in not_published {
            assert!(
                ResourceRecordSetRegion::values().contains(&r),
                "{r} is no longer listed: drop it from not_published"
            );
        }
    }

    #[test]
    fn china_and_govcloud_use_their_own_names_and_zones() {
        assert_eq!(
            lb("k8s-web-1.cn-north-1.elb.amazonaws.com.cn").0,
            "Z1GDH35T77C1KE"
        );
        assert_eq!(
            lb("k8s-nlb-1.elb.cn-northwest-1.amazonaws.com.cn").0,
            "ZQEIKTCZ8352D"
        );
        assert_eq!(
            lb("k8s-web-1.us-gov-west-1.elb.amazonaws.com").0,
            "Z33AYJ8TM3BH4J"
        );
        assert_eq!(
            lb("k8s-nlb-1.elb.us-gov-east-1.amazonaws.com").0,
            "Z1ZSMQQ6Q24QQ8"
        );
        // A China region under the commercial suffix, or the reverse, is no load balancer name.
        assert_eq!(canonical("k8s-web-1.cn-north-1.elb.amazonaws.com"), None);
        assert_eq!(canonical("k8s-web-1.eu-west-1.elb.amazonaws.com.cn"), None);
    }

    #[test]
    fn cloudfront_global_accelerator_and_vpc_endpoints_have_their_zones() {
        let cf = canonical("d111111abcdef8.cloudfront.net.").unwrap();
        assert_eq!(
            (cf.zone_id, cf.kind, cf.region),
            (CLOUDFRONT, Kind::CloudFront, None)
        );
        let ga = canonical("a1234567890abcdef.awsglobalaccelerator.com").unwrap();
        assert_eq!(
            (ga.zone_id, ga.kind),
            (GLOBAL_ACCELERATOR, Kind::GlobalAccelerator)
        );
        let ga6 = canonical("dualstack.a1234567890abcdef.awsglobalaccelerator.com").unwrap();
        assert!(ga6.dualstack);
        for host in [
            "vpce-0123456789abcdef0-abcdefgh.vpce-svc-0123456789abcdef0.us-east-1.vpce.amazonaws.com",
            "vpce-0123456789abcdef0-abcdefgh-us-east-1a.execute-api.us-east-1.vpce.amazonaws.com",
        ] {
            assert_eq!(
                lb(host),
                ("Z7HUB22UULQXV", Kind::VpcEndpoint, "us-east-1".into()),
                "{host}"
            );
        }
        // A region whose endpoint zone is not published here: left to a CNAME.
        assert_eq!(
            canonical("vpce-0123-abc.vpce-svc-0123.mx-central-1.vpce.amazonaws.com"),
            None
        );
    }

    #[test]
    fn the_seeds_classic_load_balancer_is_known() {
        let c = canonical("default-1854330541.ap-northeast-1.elb.amazonaws.com").unwrap();
        assert_eq!(c.zone_id, "Z14GRHDCWA56QT");
    }

    #[test]
    fn other_names_are_left_to_the_api_or_a_cname() {
        for host in [
            "shop.example.com",
            "elb.amazonaws.com",
            ".eu-west-1.elb.amazonaws.com",
            "x.elb.eu-west-1.amazonaws.com.evil.example",
            "lb-1.eusc-de-east-1.elb.amazonaws.com",
            "my-bucket.s3.eu-west-1.amazonaws.com",
            "cloudfront.net",
            "a.b.cloudfront.net",
            "evil.example.cloudfront.net.example.com",
            "endpoint.us-east-1.vpce.amazonaws.com",
        ] {
            assert_eq!(canonical(host), None, "{host}");
        }
    }

    #[test]
    fn regions_are_listed_once() {
        for regions in [
            LOAD_BALANCERS.iter().map(|r| r.0).collect::<Vec<_>>(),
            VPC_ENDPOINTS.iter().map(|r| r.0).collect(),
        ] {
            let mut sorted = regions.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted, regions, "sorted, each once");
        }
    }
}
