//! Who may register in which family (see SECURITY.md), and the limits on
//! a description's labels.

use protocol::{Desc, Kind, Scale};

use super::series::{om_family_name, Family, Owner, SeriesId};
use std::collections::HashMap;

use super::{CollectorSlot, Store, JOB_PREFIX, RESERVED_PREFIX};
use crate::refusal::Refusal;
use crate::validate::validate_desc;

impl Store {
    /// Refuses more labels, or longer label values, than the limits allow.
    pub(super) fn check_labels(&self, desc: &Desc) -> Result<(), Refusal> {
        let limit = self.limits.max_labels;
        if desc.labels.len() > limit {
            return Err(Refusal::TooManyLabels { name: desc.name.clone(), limit });
        }
        let limit = self.limits.max_label_value_length;
        match desc.labels.iter().find(|(_, v)| v.len() > limit) {
            Some((label, _)) => {
                Err(Refusal::LabelValueTooLong { name: desc.name.clone(), label: label.clone(), limit })
            }
            None => Ok(()),
        }
    }

    /// Whether a peer of user `uid` may register in family `name`: not in
    /// the daemon's, not in another user's; a known user claims an
    /// unclaimed family.
    pub(super) fn check_owner(&self, name: &str, uid: Option<u32>) -> Result<(), Refusal> {
        let Some(&f) = self.family_order.get(name) else {
            return if name.starts_with(RESERVED_PREFIX) || name.starts_with(JOB_PREFIX) {
                Err(Refusal::Reserved { name: name.to_owned() })
            } else {
                Ok(())
            };
        };
        match (self.families[f as usize].owner, uid) {
            (Owner::Daemon, _) => Err(Refusal::Reserved { name: name.to_owned() }),
            (Owner::Uid(owner), Some(uid)) if owner != uid => Err(Refusal::Foreign { name: name.to_owned() }),
            _ => Ok(()),
        }
    }

    /// A known user who registered in an unclaimed family now owns it.
    pub(super) fn claim(&mut self, sid: SeriesId, uid: u32) {
        let fam = &mut self.families[self.series[sid as usize].family as usize];
        if fam.owner == Owner::Unclaimed {
            fam.owner = Owner::Uid(uid);
        }
    }

    /// Declares a family that every user's collectors add to, with its
    /// type, scale and help: no one can register it otherwise, and no one
    /// owns it. A family of that name already there (from a state file)
    /// becomes shared if its type agrees.
    pub fn declare_shared(&mut self, name: &str, kind: Kind, scale: Scale, help: &str) -> Result<(), Refusal> {
        let f = match self.family_order.get(name) {
            Some(&f) => f,
            None => {
                let probe = Desc::new(name, &[], help, kind, scale);
                validate_desc(&probe)?;
                let om = om_family_name(name, kind).to_owned();
                if self.om_names.contains_key(&om) {
                    return Err(Refusal::NameConflict { name: name.to_owned(), family: om });
                }
                self.om_names.insert(om, kind);
                let fam = Family {
                    name: name.to_owned(),
                    help: help.to_owned(),
                    kind,
                    owner: Owner::Shared,
                    scale: None,
                    series: Vec::new(),
                    twin: None,
                };
                self.families.push(fam);
                let f = (self.families.len() - 1) as u32;
                self.family_order.insert(name.to_owned(), f);
                self.order.valid = false;
                f
            }
        };
        let fam = &mut self.families[f as usize];
        if fam.kind != kind {
            return Err(Refusal::TypeConflict { name: name.to_owned(), was: fam.kind, now: kind });
        }
        fam.owner = Owner::Shared;
        fam.scale = Some(scale);
        let twin = self.declare_twin(name, kind, scale, help)?;
        self.families[f as usize].twin = Some(twin);
        Ok(())
    }

    /// Records the user of a collector's connection, as the kernel reports it.
    pub fn set_uid(&mut self, slot: CollectorSlot, uid: u32) {
        if let Ok(c) = self.collectors.current_mut(slot) {
            c.uid = Some(uid);
        }
    }

    /// The families owned by a user, with their owner, for a snapshot.
    pub(crate) fn owners(&self) -> Vec<(String, u32)> {
        let owned = self.families.iter().filter_map(|f| match f.owner {
            Owner::Uid(uid) => Some((f.name.clone(), uid)),
            _ => None,
        });
        owned.collect()
    }

    /// After a restore: every family is the daemon's if its name is
    /// reserved, else its saved owner's, else unclaimed.
    pub(crate) fn restore_owners(&mut self, owners: &[(String, u32)]) {
        let owners: HashMap<&str, u32> = owners.iter().map(|(n, u)| (n.as_str(), *u)).collect();
        for f in &mut self.families {
            f.owner = match owners.get(f.name.as_str()) {
                _ if f.name.starts_with(RESERVED_PREFIX) => Owner::Daemon,
                Some(&uid) => Owner::Uid(uid),
                None => Owner::Unclaimed,
            };
        }
    }
}
