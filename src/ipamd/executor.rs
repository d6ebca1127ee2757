//! The executor: turns the planner's [`Action`]s into EC2 calls and reports each [`Outcome`].
//!
//! It holds no state of its own: everything it needs about the node comes in [`NodeIdentity`],
//! and what it learns goes back to the planner in the outcome. Calls go through the [`Ec2`] trait,
//! so driver tests use a recording fake and the daemon the real client.
//!
//! The fewest calls for each action (upstream makes the same ones, plus a DescribeInstances before
//! every attach to find a free device index; we use the device numbers we know and ask EC2 only
//! when the attach is refused for the index):
//! - create an ENI: CreateNetworkInterface (tags in TagSpecifications), AttachNetworkInterface,
//!   ModifyNetworkInterfaceAttribute (DeleteOnTermination), then wait for it in IMDS;
//!   a failed attach deletes the new ENI again (upstream does the same);
//! - assign: AssignPrivateIpAddresses; on PrivateIpAddressLimitExceeded, DescribeNetworkInterfaces
//!   of that ENI, whose answer is the truth (upstream's datastore-drift path);
//! - unassign: UnassignPrivateIpAddresses;
//! - free an ENI: DescribeNetworkInterfaces (its attachment), DetachNetworkInterface, then
//!   DeleteNetworkInterface retried while EC2 still says it is in use.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use crate::aws::ec2::{
    Addresses, AssignIpv4, AssignPrivateIpAddresses, AttachNetworkInterface,
    CreateNetworkInterface, DescribeNetworkInterfaces, DetachNetworkInterface, Ec2,
    ModifyNetworkInterfaceAttribute, NetworkInterface, Tag, UnassignPrivateIpAddresses,
};
use crate::aws::error::Ec2Error;
use crate::aws::retry::RetryEnv;
use crate::ipam::{Action, ActionKind, Completed, EniSpec, Failure, Outcome};
use crate::net::{Ipv4Cidr, MacAddr};

/// Description prefix of ENIs ipamd creates (upstream `eniDescriptionPrefix`); the leaked-ENI
/// sweep only deletes ENIs whose description starts with it.
pub const ENI_DESCRIPTION_PREFIX: &str = "aws-K8S-";
/// Tag naming the instance an ENI was created for.
pub const TAG_INSTANCE_ID: &str = "node.k8s.amazonaws.com/instance_id";
/// Tag with the ENI's creation time (RFC 3339); the sweep leaves ENIs younger than 5 minutes.
pub const TAG_CREATED_AT: &str = "node.k8s.amazonaws.com/createdAt";
/// Tag with the cluster name (CLUSTER_NAME).
pub const TAG_CLUSTER_NAME: &str = "cluster.k8s.amazonaws.com/name";
/// Owner tag set with CLUSTER_NAME (upstream `eniOwnerTagKey`).
pub const TAG_ENI_OWNER: &str = "eks:eni:owner";
/// Value of [`TAG_ENI_OWNER`].
pub const TAG_ENI_OWNER_VALUE: &str = "amazon-vpc-cni";
/// ENIs carrying this tag with value `true` are never touched.
pub const TAG_NO_MANAGE: &str = "node.k8s.amazonaws.com/no_manage";

/// What the executor needs to know of the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeIdentity {
    /// The instance.
    pub instance_id: String,
    /// Subnet for new ENIs (the primary ENI's, or the one subnet discovery chose).
    pub subnet_id: String,
    /// That subnet's CIDR (recorded on new ENIs for their route table's gateway).
    pub subnet_ipv4_cidr: Option<Ipv4Cidr>,
    /// Security groups for new ENIs (the primary ENI's).
    pub security_group_ids: Vec<String>,
    /// CLUSTER_NAME, if set.
    pub cluster_name: Option<String>,
    /// ADDITIONAL_ENI_TAGS.
    pub additional_tags: Vec<Tag>,
    /// Network card new ENIs go on (0 unless multi-NIC).
    pub network_card: u32,
}

/// Tells whether a newly attached ENI is visible on the node yet (IMDS lists its MAC with its
/// addresses). The daemon asks IMDS; tests answer from their fake.
pub trait AttachProbe: Send + Sync {
    /// `Ok(true)` once IMDS shows `mac` with all of `expected` addresses and prefixes.
    fn visible(&self, mac: &MacAddr, expected: &[Ipv4Cidr]) -> Result<bool, String>;
}

/// How patiently the executor waits (upstream's backoffs, `pkg/ipamd/ipamd.go`, `awsutils.go`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Patience {
    /// First wait for a new ENI in IMDS (upstream 100 ms, doubling).
    pub attach_first: Duration,
    /// Tries before a new ENI not seen in IMDS is reported as failed (upstream 12).
    pub attach_tries: u32,
    /// First wait before deleting a detached ENI (upstream 500 ms, doubling).
    pub delete_first: Duration,
    /// Delete tries (upstream 12).
    pub delete_tries: u32,
    /// Longest single wait.
    pub max_wait: Duration,
}

impl Default for Patience {
    fn default() -> Self {
        Patience {
            attach_first: Duration::from_millis(100),
            attach_tries: 12,
            delete_first: Duration::from_millis(500),
            delete_tries: 12,
            max_wait: Duration::from_secs(10),
        }
    }
}

/// Runs planner actions against EC2.
pub struct Executor {
    ec2: Arc<dyn Ec2>,
    probe: Arc<dyn AttachProbe>,
    env: Arc<dyn RetryEnv>,
    node: NodeIdentity,
    patience: Patience,
    now_rfc3339: Arc<dyn Fn() -> String + Send + Sync>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("node", &self.node)
            .field("patience", &self.patience)
            .finish_non_exhaustive()
    }
}

/// One action's result plus what the log should say about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Executed {
    /// For the planner.
    pub outcome: Outcome,
    /// The EC2 error that made it fail, with the call and the code.
    pub error: Option<String>,
    /// An ENI that was created but could not be attached and could not be deleted either: the
    /// leaked-ENI sweep removes it later.
    pub leaked_eni: Option<String>,
}

impl Executor {
    /// An executor for `node`; `now_rfc3339` gives the wall-clock time for the createdAt tag.
    pub fn new(
        ec2: Arc<dyn Ec2>,
        probe: Arc<dyn AttachProbe>,
        env: Arc<dyn RetryEnv>,
        node: NodeIdentity,
        now_rfc3339: Arc<dyn Fn() -> String + Send + Sync>,
    ) -> Executor {
        Executor {
            ec2,
            probe,
            env,
            node,
            patience: Patience::default(),
            now_rfc3339,
        }
    }

    /// Replaces the waits (tests).
    pub fn with_patience(mut self, p: Patience) -> Executor {
        self.patience = p;
        self
    }

    /// The node it acts for.
    pub fn node(&self) -> &NodeIdentity {
        &self.node
    }

    /// The tags every ENI it creates carries (upstream `TagENI` + `buildENITags`).
    pub fn eni_tags(&self) -> Vec<Tag> {
        let mut tags = vec![
            Tag::new(TAG_INSTANCE_ID, &self.node.instance_id),
            Tag::new(TAG_CREATED_AT, (self.now_rfc3339)()),
        ];
        if let Some(c) = &self.node.cluster_name {
            tags.push(Tag::new(TAG_CLUSTER_NAME, c));
            tags.push(Tag::new(TAG_ENI_OWNER, TAG_ENI_OWNER_VALUE));
        }
        for t in &self.node.additional_tags {
            if !tags.iter().any(|have| have.key == t.key) {
                tags.push(t.clone());
            }
        }
        tags
    }

    /// The node's ENI tags (those of [`eni_tags`](Self::eni_tags) but createdAt, which marks only
    /// ENIs ipamd created) that `current` lacks or holds with another value (upstream `TagENI`).
    pub fn missing_tags(&self, current: &[Tag]) -> Vec<Tag> {
        self.eni_tags()
            .into_iter()
            .filter(|t| t.key != TAG_CREATED_AT)
            .filter(|t| !current.iter().any(|c| c.key == t.key && c.value == t.value))
            .collect()
    }

    /// Tags an attached ENI ipamd manages with the node's ENI tags it lacks, as upstream does at
    /// start for every managed ENI, the primary included. Returns the tags written (none: no call).
    pub fn tag_managed_eni(&self, eni: &str, current: &[Tag]) -> Result<Vec<Tag>, Ec2Error> {
        let missing = self.missing_tags(current);
        if !missing.is_empty() {
            self.ec2.create_tags(&[eni.to_string()], &missing)?;
        }
        Ok(missing)
    }

    /// Executes `action`. `used_devices` are the device indexes the node's ENIs hold as far as the
    /// datastore knows (a new ENI takes the lowest free one).
    pub fn execute(&self, action: &Action, used_devices: &BTreeSet<u32>) -> Executed {
        let result = match &action.kind {
            ActionKind::CreateEni {
                addresses,
                prefixes,
            } => self.create_eni(*addresses, *prefixes, used_devices),
            ActionKind::AssignAddresses { eni, count } => {
                self.assign(eni, AssignIpv4::Count(*count))
            }
            ActionKind::AssignPrefixes { eni, count } => {
                self.assign(eni, AssignIpv4::PrefixCount(*count))
            }
            ActionKind::UnassignAddresses { eni, addresses } => self
                .ec2
                .unassign_private_ip_addresses(&UnassignPrivateIpAddresses {
                    network_interface_id: eni.clone(),
                    addresses: addresses.clone(),
                    prefixes: vec![],
                })
                .map(|()| Completed::Released)
                .map_err(Fail::from),
            ActionKind::UnassignPrefixes { eni, prefixes } => self
                .ec2
                .unassign_private_ip_addresses(&UnassignPrivateIpAddresses {
                    network_interface_id: eni.clone(),
                    addresses: vec![],
                    prefixes: prefixes.clone(),
                })
                .map(|()| Completed::Released)
                .map_err(Fail::from),
            ActionKind::FreeEni { eni } => self
                .free_eni(eni)
                .map(|()| Completed::Released)
                .map_err(Fail::from),
        };
        match result {
            Ok(completed) => Executed {
                outcome: Outcome {
                    action: action.id,
                    result: Ok(completed),
                },
                error: None,
                leaked_eni: None,
            },
            Err(f) => Executed {
                outcome: Outcome {
                    action: action.id,
                    result: Err(f.failure),
                },
                error: Some(f.message),
                leaked_eni: f.leaked_eni,
            },
        }
    }

    fn assign(&self, eni: &str, request: AssignIpv4) -> Result<Completed, Fail> {
        match self
            .ec2
            .assign_private_ip_addresses(&AssignPrivateIpAddresses {
                network_interface_id: eni.into(),
                request,
            }) {
            Ok(a) => Ok(Completed::Assigned {
                addresses: a.addresses,
                prefixes: a.prefixes,
            }),
            Err(e) if e.code() == Some("PrivateIpAddressLimitExceeded") => {
                // The datastore is behind EC2 (an unassign that failed, a restart): what EC2 holds
                // is the truth, so report all of it.
                let ni = self.describe_one(eni)?;
                Ok(Completed::Assigned {
                    addresses: secondary_addresses(&ni),
                    prefixes: ni.ipv4_prefixes.clone(),
                })
            }
            Err(e) => Err(Fail::from(e)),
        }
    }

    fn describe_one(&self, eni: &str) -> Result<NetworkInterface, Fail> {
        let mut found = self
            .ec2
            .describe_network_interfaces(&DescribeNetworkInterfaces {
                ids: vec![eni.into()],
                filters: vec![],
            })
            .map_err(Fail::from)?;
        if found.is_empty() {
            return Err(Fail::other(format!(
                "DescribeNetworkInterfaces {eni}: EC2 does not know it"
            )));
        }
        Ok(found.swap_remove(0))
    }

    fn create_eni(
        &self,
        addresses: u32,
        prefixes: u32,
        used_devices: &BTreeSet<u32>,
    ) -> Result<Completed, Fail> {
        let request = if prefixes > 0 {
            Addresses::Ipv4Prefixes(prefixes)
        } else if addresses > 0 {
            Addresses::SecondaryIpv4(addresses)
        } else {
            Addresses::None
        };
        let ni = self
            .ec2
            .create_network_interface(&CreateNetworkInterface {
                subnet_id: self.node.subnet_id.clone(),
                security_group_ids: self.node.security_group_ids.clone(),
                description: format!("{ENI_DESCRIPTION_PREFIX}{}", self.node.instance_id),
                tags: self.eni_tags(),
                addresses: request,
            })
            .map_err(Fail::from)?;
        let device = match self.attach(&ni.id, used_devices) {
            Ok(d) => d,
            Err(mut f) => {
                // Upstream deletes an ENI it could not attach; if that fails too, the sweep will.
                if let Err(e) = self.ec2.delete_network_interface(&ni.id) {
                    f.leaked_eni = Some(ni.id.clone());
                    f.message = format!("{}; deleting it failed too: {e}", f.message);
                }
                return Err(f);
            }
        };
        let mac: Option<MacAddr> = ni.mac_address.parse().ok();
        let secondary = secondary_addresses(&ni);
        let mut expected: Vec<Ipv4Cidr> = secondary.iter().map(|a| Ipv4Cidr::host(*a)).collect();
        expected.extend(ni.ipv4_prefixes.iter().copied());
        if let Some(mac) = &mac {
            self.wait_visible(&ni.id, mac, &expected)?;
        }
        Ok(Completed::EniAttached {
            eni: EniSpec {
                id: ni.id.clone(),
                device_number: device,
                network_card: self.node.network_card,
                subnet_id: ni.subnet_id.clone(),
                primary_ipv4: ni.private_ip_address,
                mac,
                subnet_ipv4_cidr: self.node.subnet_ipv4_cidr,
                ..EniSpec::default()
            },
            addresses: secondary,
            prefixes: ni.ipv4_prefixes.clone(),
        })
    }

    /// Attaches at the lowest free device index; if EC2 says that index is taken (our view was
    /// stale), asks EC2 which are used and tries once more. Then sets DeleteOnTermination.
    fn attach(&self, eni: &str, used_devices: &BTreeSet<u32>) -> Result<u32, Fail> {
        let mut device = lowest_free(used_devices);
        let attachment_id = match self.attach_at(eni, device) {
            Ok(id) => id,
            Err(e) if e.code() == Some("InvalidParameterValue") => {
                let used = self.devices_from_ec2()?;
                device = lowest_free(&used);
                self.attach_at(eni, device).map_err(Fail::from)?
            }
            Err(e) => return Err(Fail::from(e)),
        };
        self.ec2
            .modify_network_interface_attribute(
                &ModifyNetworkInterfaceAttribute::DeleteOnTermination {
                    network_interface_id: eni.into(),
                    attachment_id,
                    delete_on_termination: true,
                },
            )
            .map_err(Fail::from)?;
        Ok(device)
    }

    fn attach_at(&self, eni: &str, device: u32) -> Result<String, Ec2Error> {
        self.ec2.attach_network_interface(&AttachNetworkInterface {
            network_interface_id: eni.into(),
            instance_id: self.node.instance_id.clone(),
            device_index: device,
            network_card_index: (self.node.network_card > 0).then_some(self.node.network_card),
        })
    }

    fn devices_from_ec2(&self) -> Result<BTreeSet<u32>, Fail> {
        let attached = self
            .ec2
            .describe_network_interfaces(&DescribeNetworkInterfaces {
                ids: vec![],
                filters: vec![crate::aws::ec2::Filter::new(
                    "attachment.instance-id",
                    [self.node.instance_id.clone()],
                )],
            })
            .map_err(Fail::from)?;
        Ok(attached
            .iter()
            .filter_map(|n| n.attachment.as_ref().and_then(|a| a.device_index))
            .collect())
    }

    fn wait_visible(&self, eni: &str, mac: &MacAddr, expected: &[Ipv4Cidr]) -> Result<(), Fail> {
        let mut wait = self.patience.attach_first;
        let mut last = String::from("not listed yet");
        for _ in 0..self.patience.attach_tries {
            match self.probe.visible(mac, expected) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => last = e,
            }
            self.env.sleep(wait);
            wait = (wait * 2).min(self.patience.max_wait);
        }
        // The ENI is attached in EC2; the reconcile loop adopts it once IMDS shows it.
        Err(Fail::other(format!(
            "ENI {eni} ({mac}) attached but not visible in IMDS after {} tries: {last}",
            self.patience.attach_tries
        )))
    }

    fn free_eni(&self, eni: &str) -> Result<(), Ec2Error> {
        let found = self
            .ec2
            .describe_network_interfaces(&DescribeNetworkInterfaces {
                ids: vec![eni.into()],
                filters: vec![],
            });
        let ni = match found {
            Ok(mut v) if !v.is_empty() => v.swap_remove(0),
            Ok(_) => return Ok(()),
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        };
        if let Some(att) = ni
            .attachment
            .as_ref()
            .filter(|a| !a.attachment_id.is_empty())
        {
            match self.ec2.detach_network_interface(&DetachNetworkInterface {
                attachment_id: att.attachment_id.clone(),
                force: false,
            }) {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        let mut wait = self.patience.delete_first;
        let mut tries = 0;
        loop {
            tries += 1;
            match self.ec2.delete_network_interface(eni) {
                Ok(()) => return Ok(()),
                Err(e) if e.is_not_found() => return Ok(()),
                Err(e) if tries < self.patience.delete_tries && still_detaching(&e) => {
                    self.env.sleep(wait);
                    wait = (wait * 2).min(self.patience.max_wait);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// EC2's answers while a detach is still in progress.
fn still_detaching(e: &Ec2Error) -> bool {
    matches!(
        e.code(),
        Some("InvalidNetworkInterface.InUse" | "IncorrectState" | "InvalidParameterValue")
    )
}

fn lowest_free(used: &BTreeSet<u32>) -> u32 {
    (0..).find(|d| !used.contains(d)).unwrap_or(u32::MAX)
}

/// An ENI's secondary private addresses (its primary excluded).
pub fn secondary_addresses(ni: &NetworkInterface) -> Vec<Ipv4Addr> {
    ni.private_ips
        .iter()
        .filter(|p| !p.primary && Some(p.address) != ni.private_ip_address)
        .map(|p| p.address)
        .collect()
}

#[derive(Debug)]
struct Fail {
    failure: Failure,
    message: String,
    leaked_eni: Option<String>,
}

impl Fail {
    fn other(message: String) -> Fail {
        Fail {
            failure: Failure::Other,
            message,
            leaked_eni: None,
        }
    }
}

/// How the planner should take an EC2 error: `InsufficientCidrBlocks` (no free /28 in the subnet,
/// single addresses may remain) apart from the other capacity errors, as the prefix fallback
/// depends on it.
pub fn failure_of(e: &Ec2Error) -> Failure {
    if e.code() == Some("InsufficientCidrBlocks") {
        Failure::NoFreePrefix
    } else if e.is_capacity() {
        Failure::InsufficientCapacity
    } else {
        Failure::Other
    }
}

impl From<Ec2Error> for Fail {
    fn from(e: Ec2Error) -> Fail {
        Fail {
            failure: failure_of(&e),
            message: e.to_string(),
            leaked_eni: None,
        }
    }
}
