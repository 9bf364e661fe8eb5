//! The bindings of every resource, indexed for the check each request makes: whether a caller
//! holds a permission through a binding on a resource or any of its ancestors. Pure data; the
//! service keeps one in memory, replaced after each committed change.

use super::roles::{Permission, role_grants};
use crate::model::{Binding, Resource};
use lockbox_proto::Principal;
use std::collections::HashMap;

/// One resource's bindings: the list as stored, and the roles of each subject for checks
/// that cost the same with 1 or 1,000 bindings.
#[derive(Debug, Default)]
pub struct ResourceBindings {
    /// The bindings, in stored order.
    list: Vec<Binding>,
    /// Roles by subject.
    by_subject: HashMap<String, Vec<String>>,
}

impl ResourceBindings {
    /// The index of one resource's bindings.
    pub fn new(list: Vec<Binding>) -> Self {
        let mut by_subject: HashMap<String, Vec<String>> = HashMap::new();
        for b in &list {
            by_subject
                .entry(b.subject.clone())
                .or_default()
                .push(b.role.clone());
        }
        Self { list, by_subject }
    }

    /// The bindings, in stored order.
    pub fn list(&self) -> &[Binding] {
        &self.list
    }

    /// The roles any of the caller's subjects holds here.
    pub fn roles_of<'a>(&'a self, caller: &'a Principal) -> impl Iterator<Item = &'a str> {
        subjects(caller)
            .filter_map(|s| self.by_subject.get(s))
            .flatten()
            .map(String::as_str)
    }
}

/// Bindings by resource.
pub type BindingMap = HashMap<Resource, ResourceBindings, crate::model::ids::IdHashing>;

/// Builds the cache from stored bindings.
pub fn binding_map(stored: Vec<(Resource, Vec<Binding>)>) -> BindingMap {
    stored
        .into_iter()
        .map(|(r, list)| (r, ResourceBindings::new(list)))
        .collect()
}

/// Whether `caller` holds `permission` through a binding anywhere on `chain` (the resource
/// and its ancestors): a hash lookup per subject per level, however many bindings there are.
pub fn allows(
    bindings: &BindingMap,
    caller: &Principal,
    chain: &[Resource],
    permission: Permission,
) -> bool {
    chain.iter().any(|r| {
        bindings.get(r).is_some_and(|rb| {
            rb.roles_of(caller)
                .any(|role| role_grants(role, permission))
        })
    })
}

/// Every subject the caller acts as: itself, its groups, and the system groups (every
/// local caller is authenticated by the kernel).
fn subjects(caller: &Principal) -> impl Iterator<Item = &str> {
    [
        caller.subject.as_str(),
        "system:allAuthenticatedUsers",
        "system:allUsers",
    ]
    .into_iter()
    .chain(caller.groups.iter().map(String::as_str))
}
