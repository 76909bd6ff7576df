"""Creates in moto what the Rust SDK crates this project links cannot: an ELBv2 load balancer
needs subnets, and subnets are EC2's (a large SDK crate the functions do not need).

    python aws_seed.py load-balancer ENDPOINT REGION NAME [ipv4|dualstack]

prints {"dns_name": ..., "canonical_zone_id": ..., "arn": ...} on one line.
"""
import json
import sys

import boto3


def client(service: str, endpoint: str, region: str):
    return boto3.client(service, endpoint_url=endpoint, region_name=region,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def load_balancer(endpoint: str, region: str, name: str, ip_type: str = "ipv4") -> None:
    ec2 = client("ec2", endpoint, region)
    subnets = [s["SubnetId"] for s in ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]]
    lb = client("elbv2", endpoint, region).create_load_balancer(
        Name=name, Subnets=subnets[:2], Type="application", Scheme="internet-facing", IpAddressType=ip_type,
    )["LoadBalancers"][0]
    print(json.dumps({"dns_name": lb["DNSName"], "canonical_zone_id": lb["CanonicalHostedZoneId"], "arn": lb["LoadBalancerArn"]}))


if __name__ == "__main__":
    if len(sys.argv) < 5 or sys.argv[1] != "load-balancer":
        sys.exit(__doc__)
    load_balancer(*sys.argv[2:])
