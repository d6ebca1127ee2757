//! The leaked-ENI sweep against a recording fake of the real `Ec2` trait: which ENIs it asks for,
//! which it deletes, which it tags and leaves.

#![allow(clippy::unwrap_used)]

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use vpc_cni::aws::ec2::{
    AssignIpv6Addresses, AssignPrivateIpAddresses, AssignedIpv4, AssignedIpv6,
    AttachNetworkInterface, Attachment, CreateNetworkInterface, DescribeInstances,
    DescribeNetworkInterfaces, DescribeSubnets, DetachNetworkInterface, Ec2, Instance,
    InstanceTypeInfo, ModifyNetworkInterfaceAttribute, NetworkInterface, Subnet, Tag,
    UnassignIpv6Addresses, UnassignPrivateIpAddresses,
};
use vpc_cni::aws::error::{Ec2Error, Ec2ErrorKind};
use vpc_cni::ipamd::daemon::rfc3339_of;
use vpc_cni::ipamd::sweep::sweep_leaked_enis;

#[derive(Default)]
struct Recorder {
    answer: Vec<NetworkInterface>,
    describes: Mutex<Vec<DescribeNetworkInterfaces>>,
    deleted: Mutex<Vec<String>>,
    tagged: Mutex<Vec<(String, Tag)>>,
}

fn unexpected<T>(what: &'static str) -> Result<T, Ec2Error> {
    Err(Ec2Error {
        action: what,
        attempts: 1,
        kind: Ec2ErrorKind::Api {
            status: 400,
            code: "Unexpected".into(),
            message: format!("the sweep must not call {what}"),
        },
        request_id: None,
    })
}

impl Ec2 for Recorder {
    fn describe_instances(&self, _: &DescribeInstances) -> Result<Vec<Instance>, Ec2Error> {
        unexpected("DescribeInstances")
    }
    fn describe_instance_types(&self, _: &[String]) -> Result<Vec<InstanceTypeInfo>, Ec2Error> {
        unexpected("DescribeInstanceTypes")
    }
    fn describe_subnets(&self, _: &DescribeSubnets) -> Result<Vec<Subnet>, Ec2Error> {
        unexpected("DescribeSubnets")
    }
    fn describe_network_interfaces(
        &self,
        req: &DescribeNetworkInterfaces,
    ) -> Result<Vec<NetworkInterface>, Ec2Error> {
        self.describes.lock().unwrap().push(req.clone());
        Ok(self.answer.clone())
    }
    fn create_network_interface(
        &self,
        _: &CreateNetworkInterface,
    ) -> Result<NetworkInterface, Ec2Error> {
        unexpected("CreateNetworkInterface")
    }
    fn attach_network_interface(&self, _: &AttachNetworkInterface) -> Result<String, Ec2Error> {
        unexpected("AttachNetworkInterface")
    }
    fn modify_network_interface_attribute(
        &self,
        _: &ModifyNetworkInterfaceAttribute,
    ) -> Result<(), Ec2Error> {
        unexpected("ModifyNetworkInterfaceAttribute")
    }
    fn assign_private_ip_addresses(
        &self,
        _: &AssignPrivateIpAddresses,
    ) -> Result<AssignedIpv4, Ec2Error> {
        unexpected("AssignPrivateIpAddresses")
    }
    fn unassign_private_ip_addresses(
        &self,
        _: &UnassignPrivateIpAddresses,
    ) -> Result<(), Ec2Error> {
        unexpected("UnassignPrivateIpAddresses")
    }
    fn assign_ipv6_addresses(&self, _: &AssignIpv6Addresses) -> Result<AssignedIpv6, Ec2Error> {
        unexpected("AssignIpv6Addresses")
    }
    fn unassign_ipv6_addresses(&self, _: &UnassignIpv6Addresses) -> Result<(), Ec2Error> {
        unexpected("UnassignIpv6Addresses")
    }
    fn detach_network_interface(&self, _: &DetachNetworkInterface) -> Result<(), Ec2Error> {
        unexpected("DetachNetworkInterface")
    }
    fn delete_network_interface(&self, id: &str) -> Result<(), Ec2Error> {
        self.deleted.lock().unwrap().push(id.to_string());
        Ok(())
    }
    fn create_tags(&self, ids: &[String], tags: &[Tag]) -> Result<(), Ec2Error> {
        for id in ids {
            for t in tags {
                self.tagged.lock().unwrap().push((id.clone(), t.clone()));
            }
        }
        Ok(())
    }
}

fn eni(id: &str, description: &str, created: Option<&str>) -> NetworkInterface {
    let mut tags = vec![Tag::new("node.k8s.amazonaws.com/instance_id", "i-gone")];
    if let Some(c) = created {
        tags.push(Tag::new("node.k8s.amazonaws.com/createdAt", c));
    }
    NetworkInterface {
        id: id.into(),
        description: description.into(),
        status: "available".into(),
        tags,
        ..NetworkInterface::default()
    }
}

#[test]
fn only_old_enis_ipamd_created_are_deleted_and_untagged_ones_get_a_creation_time() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let old = rfc3339_of(now - Duration::from_secs(301));
    let young = rfc3339_of(now - Duration::from_secs(299));
    let mut attached = eni("eni-attached", "aws-K8S-i-1", Some(&old));
    attached.attachment = Some(Attachment::default());
    let ec2 = Recorder {
        answer: vec![
            eni("eni-old", "aws-K8S-i-gone", Some(&old)),
            eni("eni-young", "aws-K8S-i-gone", Some(&young)),
            eni("eni-untagged", "aws-K8S-i-gone", None),
            eni("eni-garbled", "aws-K8S-i-gone", Some("yesterday")),
            eni("eni-someone-elses", "database ENI", Some(&old)),
            attached,
        ],
        ..Recorder::default()
    };
    let n = sweep_leaked_enis(&ec2, "vpc-1", "prod", now).unwrap();
    assert_eq!(n, 1);
    assert_eq!(*ec2.deleted.lock().unwrap(), vec!["eni-old".to_string()]);
    let tagged = ec2.tagged.lock().unwrap();
    assert_eq!(tagged.len(), 1, "{tagged:?}");
    assert_eq!(tagged[0].0, "eni-untagged");
    assert_eq!(tagged[0].1.key, "node.k8s.amazonaws.com/createdAt");
    assert_eq!(tagged[0].1.value, rfc3339_of(now));
    let d = ec2.describes.lock().unwrap();
    assert_eq!(d.len(), 1, "one DescribeNetworkInterfaces per sweep");
    let filters: Vec<(String, Vec<String>)> = d[0]
        .filters
        .iter()
        .map(|f| (f.name.clone(), f.values.clone()))
        .collect();
    assert_eq!(
        filters,
        vec![
            (
                "tag-key".into(),
                vec!["node.k8s.amazonaws.com/instance_id".into()]
            ),
            ("status".into(), vec!["available".into()]),
            ("vpc-id".into(), vec!["vpc-1".into()]),
            (
                "tag:cluster.k8s.amazonaws.com/name".into(),
                vec!["prod".into()]
            ),
        ]
    );
}

#[test]
fn without_a_cluster_name_the_sweep_does_not_filter_on_it() {
    let ec2 = Recorder::default();
    assert_eq!(
        sweep_leaked_enis(&ec2, "vpc-1", "", SystemTime::now()).unwrap(),
        0
    );
    let d = ec2.describes.lock().unwrap();
    assert!(d[0]
        .filters
        .iter()
        .all(|f| !f.name.starts_with("tag:cluster")));
}

#[test]
fn at_start_this_nodes_unattached_enis_go_whatever_their_age() {
    let young = rfc3339_of(SystemTime::now());
    let mut mine = eni("eni-mine", "aws-K8S-i-me", Some(&young));
    mine.tags[0] = Tag::new("node.k8s.amazonaws.com/instance_id", "i-me");
    let mut attached = mine.clone();
    attached.id = "eni-attached".into();
    attached.attachment = Some(Attachment::default());
    let mut kept = mine.clone();
    kept.id = "eni-no-manage".into();
    kept.tags
        .push(Tag::new("node.k8s.amazonaws.com/no_manage", "true"));
    let ec2 = Recorder {
        answer: vec![
            mine,
            attached,
            kept,
            // Another node's ENI, should EC2's filter let it through: not ours to delete at our start.
            eni("eni-other-node", "aws-K8S-i-gone", Some(&young)),
            eni("eni-someone-elses", "database ENI", Some(&young)),
        ],
        ..Recorder::default()
    };
    let n = vpc_cni::ipamd::sweep::delete_own_unattached_enis(&ec2, "i-me").unwrap();
    assert_eq!(n, 1);
    assert_eq!(*ec2.deleted.lock().unwrap(), vec!["eni-mine".to_string()]);
    let d = ec2.describes.lock().unwrap();
    let filters: Vec<(String, Vec<String>)> = d[0]
        .filters
        .iter()
        .map(|f| (f.name.clone(), f.values.clone()))
        .collect();
    assert_eq!(
        filters,
        vec![
            (
                "tag:node.k8s.amazonaws.com/instance_id".into(),
                vec!["i-me".into()]
            ),
            ("status".into(), vec!["available".into()]),
        ]
    );
}
