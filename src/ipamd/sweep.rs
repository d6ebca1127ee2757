//! The leaked-ENI sweep (upstream `cleanUpLeakedENIs`): ENIs ipamd created for some instance of this
//! VPC (and cluster) that are no longer attached to anything, left behind by a node that died
//! between detach and delete, or by an attach that failed and could not be undone.

use std::time::{Duration, SystemTime};

use log::{info, warn};

use super::executor::{
    ENI_DESCRIPTION_PREFIX, TAG_CLUSTER_NAME, TAG_CREATED_AT, TAG_INSTANCE_ID, TAG_NO_MANAGE,
};
use crate::aws::ec2::{DescribeNetworkInterfaces, Ec2, Filter, Tag};

/// ENIs younger than this are not leaked yet: their node may still be attaching them (upstream 5 min).
pub const LEAKED_ENI_MIN_AGE: Duration = Duration::from_secs(300);

/// One sweep: DescribeNetworkInterfaces of available ENIs with ipamd's instance tag in `vpc_id`
/// (and `cluster_name`'s tag when set); those whose description starts with `aws-K8S-` and whose
/// createdAt tag is at least 5 minutes before `now` are deleted. One without a createdAt tag is
/// tagged with `now` and left for the next sweep; one with an unreadable tag is left alone (upstream
/// deletes it, which could take an ENI another tool is still setting up). Returns how many were deleted.
pub fn sweep_leaked_enis(
    ec2: &dyn Ec2,
    vpc_id: &str,
    cluster_name: &str,
    now: SystemTime,
) -> Result<usize, String> {
    let mut filters = vec![
        Filter::new("tag-key", [TAG_INSTANCE_ID]),
        Filter::new("status", ["available"]),
        Filter::new("vpc-id", [vpc_id]),
    ];
    if !cluster_name.is_empty() {
        filters.push(Filter::new(
            format!("tag:{TAG_CLUSTER_NAME}"),
            [cluster_name],
        ));
    }
    let found = ec2
        .describe_network_interfaces(&DescribeNetworkInterfaces {
            ids: vec![],
            filters,
        })
        .map_err(|e| e.to_string())?;
    let mut deleted = 0;
    for ni in found {
        if !ni.description.starts_with(ENI_DESCRIPTION_PREFIX) || ni.attachment.is_some() {
            continue;
        }
        match ni.tag(TAG_CREATED_AT) {
            None => {
                let tag = Tag::new(TAG_CREATED_AT, super::daemon::rfc3339_of(now));
                if let Err(e) = ec2.create_tags(std::slice::from_ref(&ni.id), &[tag]) {
                    warn!("tagging ENI {} with its creation time: {e}", ni.id);
                }
                continue;
            }
            Some(t) => match crate::aws::credentials::parse_rfc3339(t) {
                Some(created)
                    if now.duration_since(created).unwrap_or_default() >= LEAKED_ENI_MIN_AGE => {}
                Some(_) => continue,
                None => {
                    warn!(
                        "ENI {}: createdAt tag {t:?} is not RFC 3339; left alone",
                        ni.id
                    );
                    continue;
                }
            },
        }
        match ec2.delete_network_interface(&ni.id) {
            Ok(()) => {
                info!("deleted leaked ENI {}", ni.id);
                deleted += 1;
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => warn!("deleting leaked ENI {}: {e}", ni.id),
        }
    }
    Ok(deleted)
}

/// At start: deletes the ENIs ipamd created for this instance (`instance_id` tag, `aws-K8S-`
/// description) that are not attached, whatever their age. Only this node's ipamd creates ENIs for
/// it and nothing is in flight before the first pool check, so such an ENI was left by an earlier
/// run that died between create and attach (or lost the answer): the hourly sweep would take it
/// only after 5 minutes and up to an hour. Returns how many were deleted.
pub fn delete_own_unattached_enis(ec2: &dyn Ec2, instance_id: &str) -> Result<usize, String> {
    let found = ec2
        .describe_network_interfaces(&DescribeNetworkInterfaces {
            ids: vec![],
            filters: vec![
                Filter::new(format!("tag:{TAG_INSTANCE_ID}"), [instance_id]),
                Filter::new("status", ["available"]),
            ],
        })
        .map_err(|e| e.to_string())?;
    let mut deleted = 0;
    for ni in found {
        if !ni.description.starts_with(ENI_DESCRIPTION_PREFIX)
            || ni.attachment.is_some()
            || ni.tag(TAG_INSTANCE_ID) != Some(instance_id)
            || ni.tag(TAG_NO_MANAGE).is_some()
        {
            continue;
        }
        match ec2.delete_network_interface(&ni.id) {
            Ok(()) => {
                info!(
                    "deleted ENI {}, created for this node by an earlier run and never attached",
                    ni.id
                );
                deleted += 1;
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => warn!("deleting unattached ENI {}: {e}", ni.id),
        }
    }
    Ok(deleted)
}
