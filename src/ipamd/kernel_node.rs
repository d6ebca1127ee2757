//! [`NodeNet`] on the real kernel: the node wiring plans ([`super::node_plan`]) applied by
//! [`NodeKernel`], plus the checks checkpoint restore needs (does a pod's veth exist, drop a
//! pod's rules).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use super::daemon::NodeNet;
use super::node_apply::NodeKernel;
use super::node_plan::{self, EniWiring, NodeSettings, NodeSpec};
use crate::cni::plan::{FROM_POD_RULE_PRIORITY, TO_POD_RULE_PRIORITY};
use crate::ipam::EniSpec;
use crate::net::{IpNet, Ipv4Cidr};
use crate::netlink::{Family, Netlink};

/// The node's kernel as ipamd changes it.
#[derive(Debug)]
pub struct KernelNode {
    kernel: NodeKernel,
    nl: Netlink,
    settings: NodeSettings,
    /// What was wired per ENI id, so an ENI can be unwired after it left the datastore.
    wired: BTreeMap<String, EniWiring>,
}

impl KernelNode {
    /// The calling thread's namespace.
    pub fn open(settings: NodeSettings) -> Result<KernelNode, String> {
        Ok(KernelNode {
            kernel: NodeKernel::open().map_err(|e| e.to_string())?,
            nl: Netlink::open().map_err(|e| e.to_string())?,
            settings,
            wired: BTreeMap::new(),
        })
    }
}

/// The wiring of a datastore ENI, if the datastore knows enough of it.
pub fn eni_wiring(e: &EniSpec) -> Result<EniWiring, String> {
    let missing = |what: &str| format!("ENI {}: {what} unknown, cannot wire it", e.id);
    Ok(EniWiring {
        device_number: e.device_number,
        mac: e.mac.ok_or_else(|| missing("MAC"))?,
        primary_ip: e.primary_ipv4.ok_or_else(|| missing("primary address"))?,
        subnet: e.subnet_ipv4_cidr.ok_or_else(|| missing("subnet CIDR"))?,
        route_table: crate::ipam::datastore::route_table_id(e.network_card, e.device_number),
    })
}

impl NodeNet for KernelNode {
    fn wire_host(&mut self, primary: &EniSpec, vpc_cidrs: &[Ipv4Cidr]) -> Result<(), String> {
        let spec = NodeSpec {
            primary: eni_wiring(primary)?,
            secondaries: vec![],
            vpc_cidrs: vpc_cidrs.to_vec(),
            settings: self.settings.clone(),
        };
        let ops = node_plan::host_plan(&spec);
        self.kernel.apply(&ops).map_err(|e| e.to_string())
    }

    fn wire_eni(&mut self, eni: &EniSpec) -> Result<(), String> {
        let w = eni_wiring(eni)?;
        let ops = node_plan::eni_plan(&w, &self.settings).map_err(|e| e.to_string())?;
        self.kernel.apply(&ops).map_err(|e| e.to_string())?;
        self.wired.insert(eni.id.clone(), w);
        Ok(())
    }

    fn unwire_eni(&mut self, eni_id: &str) -> Result<(), String> {
        let Some(w) = self.wired.remove(eni_id) else {
            return Ok(());
        };
        let ops = node_plan::remove_eni_plan(&w).map_err(|e| e.to_string())?;
        self.kernel.apply(&ops).map_err(|e| e.to_string())
    }

    fn link_exists(&mut self, name: &str) -> Result<bool, String> {
        self.nl
            .link_by_name(name)
            .map(|l| l.is_some())
            .map_err(|e| e.to_string())
    }

    fn pod_routes(&mut self, veth_prefix: &str) -> Result<Vec<(Ipv4Addr, String)>, String> {
        let links = self.nl.links().map_err(|e| e.to_string())?;
        let routes = self
            .nl
            .routes(Family::V4, crate::cni::plan::MAIN_TABLE)
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for r in routes {
            let (IpAddr::V4(ip), 32) = (r.dst.addr(), r.dst.prefix_len()) else {
                continue;
            };
            let Some(link) = r.oif.and_then(|i| links.iter().find(|l| l.index == i)) else {
                continue;
            };
            if link.name.starts_with(veth_prefix) && r.gateway.is_none() {
                out.push((ip, link.name.clone()));
            }
        }
        Ok(out)
    }

    fn delete_pod_rules(&mut self, ip: Ipv4Addr) -> Result<(), String> {
        let host = IpNet::host(IpAddr::V4(ip));
        let rules = self.nl.rules(Family::V4).map_err(|e| e.to_string())?;
        for r in rules {
            let ours = (r.priority == Some(TO_POD_RULE_PRIORITY) && r.dst == Some(host))
                || (r.priority == Some(FROM_POD_RULE_PRIORITY) && r.src == Some(host));
            if ours {
                self.nl.delete_rule(&r).map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }
}
