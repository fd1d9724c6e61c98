//! Moves one member's current assignment towards its target, KIP-848's reconciliation:
//!
//! - partitions the member has but should not are revoked first: the member stays at its
//!   epoch, in `UnrevokedPartitions`, until a heartbeat no longer reports them as owned;
//! - only then does it move to the target epoch and receive new partitions, and only those
//!   that no other member still holds (assigned or pending revocation); the others come later
//!   (`UnreleasedPartitions`), once their owner released them.

use super::records::{Assignment, CurrentMemberAssignmentValue, MemberState};

/// Computes the member's next current assignment. `owned` is what the member reported in
/// its heartbeat (`None` when it did not say, which counts as still owning everything);
/// `held_by_other(topic, partition)` tells whether another member still holds a partition.
pub fn reconcile(
    current: &CurrentMemberAssignmentValue,
    target_epoch: i32,
    target: &Assignment,
    owned: Option<&Assignment>,
    held_by_other: &dyn Fn(&uuid::Uuid, i32) -> bool,
) -> CurrentMemberAssignmentValue {
    match current.state {
        MemberState::Stable if current.member_epoch == target_epoch => current.clone(),
        MemberState::UnrevokedPartitions if still_owns_any(owned, &current.pending_revocation) => {
            current.clone()
        }
        _ => next_assignment(current, target_epoch, target, owned, held_by_other),
    }
}

/// Whether the member (per its report) still owns any of `revoked`.
fn still_owns_any(owned: Option<&Assignment>, revoked: &Assignment) -> bool {
    let Some(owned) = owned else {
        return true;
    };
    revoked.iter().any(|(topic, partitions)| {
        owned
            .get(topic)
            .is_some_and(|o| partitions.iter().any(|p| o.contains(p)))
    })
}

fn next_assignment(
    current: &CurrentMemberAssignmentValue,
    target_epoch: i32,
    target: &Assignment,
    owned: Option<&Assignment>,
    held_by_other: &dyn Fn(&uuid::Uuid, i32) -> bool,
) -> CurrentMemberAssignmentValue {
    let mut kept = Assignment::new();
    let mut revoke = Assignment::new();
    let mut to_add = Assignment::new();
    let mut unreleased = false;

    let topics: std::collections::BTreeSet<_> = target
        .keys()
        .chain(current.assigned.keys())
        .copied()
        .collect();
    let empty = Default::default();
    for topic in topics {
        let wanted = target.get(&topic).unwrap_or(&empty);
        let have = current.assigned.get(&topic).unwrap_or(&empty);
        let keep: std::collections::BTreeSet<i32> = have.intersection(wanted).copied().collect();
        let gone: std::collections::BTreeSet<i32> = have.difference(&keep).copied().collect();
        let mut add: std::collections::BTreeSet<i32> = wanted.difference(&keep).copied().collect();
        let before = add.len();
        add.retain(|p| !held_by_other(&topic, *p));
        unreleased |= add.len() != before;
        if !keep.is_empty() {
            kept.insert(topic, keep);
        }
        if !gone.is_empty() {
            revoke.insert(topic, gone);
        }
        if !add.is_empty() {
            to_add.insert(topic, add);
        }
    }

    if !revoke.is_empty() && still_owns_any(owned, &revoke) {
        // Revoke first: stay at the current epoch until the member confirms.
        return CurrentMemberAssignmentValue {
            member_epoch: current.member_epoch,
            previous_member_epoch: current.previous_member_epoch,
            state: MemberState::UnrevokedPartitions,
            assigned: kept,
            pending_revocation: revoke,
        };
    }
    for (topic, partitions) in to_add {
        kept.entry(topic).or_default().extend(partitions);
    }
    let (previous_member_epoch, member_epoch) = if current.member_epoch == target_epoch {
        (current.previous_member_epoch, current.member_epoch)
    } else {
        (current.member_epoch, target_epoch)
    };
    CurrentMemberAssignmentValue {
        member_epoch,
        previous_member_epoch,
        state: if unreleased {
            MemberState::UnreleasedPartitions
        } else {
            MemberState::Stable
        },
        assigned: kept,
        pending_revocation: Assignment::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn t() -> Uuid {
        Uuid::from_bytes([1; 16])
    }

    fn parts(ps: &[i32]) -> Assignment {
        Assignment::from([(t(), ps.iter().copied().collect())])
    }

    fn member(
        epoch: i32,
        state: MemberState,
        assigned: &[i32],
        pending: &[i32],
    ) -> CurrentMemberAssignmentValue {
        CurrentMemberAssignmentValue {
            member_epoch: epoch,
            previous_member_epoch: epoch - 1,
            state,
            assigned: if assigned.is_empty() {
                Assignment::new()
            } else {
                parts(assigned)
            },
            pending_revocation: if pending.is_empty() {
                Assignment::new()
            } else {
                parts(pending)
            },
        }
    }

    #[test]
    fn given_partitions_to_give_up_when_reconciling_should_revoke_before_moving_epoch() {
        let m = member(1, MemberState::Stable, &[0, 1, 2, 3], &[]);
        let next = reconcile(&m, 2, &parts(&[0, 1]), None, &|_, _| false);
        assert_eq!(next.state, MemberState::UnrevokedPartitions);
        assert_eq!(next.member_epoch, 1);
        assert_eq!(next.assigned, parts(&[0, 1]));
        assert_eq!(next.pending_revocation, parts(&[2, 3]));
        // still reporting 2: nothing moves
        let again = reconcile(
            &next,
            2,
            &parts(&[0, 1]),
            Some(&parts(&[0, 1, 2])),
            &|_, _| false,
        );
        assert_eq!(again, next);
        // revoked: on to epoch 2
        let done = reconcile(&next, 2, &parts(&[0, 1]), Some(&parts(&[0, 1])), &|_, _| {
            false
        });
        assert_eq!(done.state, MemberState::Stable);
        assert_eq!((done.member_epoch, done.previous_member_epoch), (2, 1));
        assert!(done.pending_revocation.is_empty());
    }

    #[test]
    fn given_partitions_held_by_others_when_reconciling_should_wait_for_their_release() {
        let m = member(0, MemberState::Stable, &[], &[]);
        let next = reconcile(&m, 3, &parts(&[2, 3]), Some(&Assignment::new()), &|_, p| {
            p == 3
        });
        assert_eq!(next.state, MemberState::UnreleasedPartitions);
        assert_eq!(next.member_epoch, 3);
        assert_eq!(next.assigned, parts(&[2]));
        let later = reconcile(&next, 3, &parts(&[2, 3]), None, &|_, _| false);
        assert_eq!(later.state, MemberState::Stable);
        assert_eq!(later.assigned, parts(&[2, 3]));
        assert_eq!(later.member_epoch, 3);
    }

    #[test]
    fn given_a_member_already_at_target_when_reconciling_should_change_nothing() {
        let m = member(4, MemberState::Stable, &[1], &[]);
        assert_eq!(reconcile(&m, 4, &parts(&[1, 2]), None, &|_, _| false), m);
    }
}
