//! Tests of `keys`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use super::*;

const POLICY: RingPolicy = RingPolicy {
    publish_ahead: 3600,
    retire_after: 86_400 + 60,
    rotate_every: 30 * 86_400,
};

fn ed(state: KeyState, now: i64) -> RingKey {
    RingKey::fresh(SigningKey::generate(Algorithm::EdDSA, 0).unwrap().0, state, now).unwrap()
}

fn ring(now: i64) -> KeyRing {
    KeyRing::from_keys(vec![ed(KeyState::Active, now), ed(KeyState::Next, now)]).unwrap()
}

#[test]
fn rotation_waits_for_publish_ahead_unless_forced() {
    let r = ring(1000);
    let err = r.check_rotation(&POLICY, 1000 + 3599, false).unwrap_err();
    assert_eq!(err.code(), "rotation_too_early");
    assert!(err.to_string().contains("in 1s"), "{err}");
    r.check_rotation(&POLICY, 1000 + 3600, false).unwrap();
    r.check_rotation(&POLICY, 1001, true).unwrap();
}

#[test]
fn rotate_moves_every_state_one_step_and_keeps_newest_first() {
    let r = ring(0);
    let old_active = r.active().unwrap().record.kid.clone();
    let old_next = r.next().unwrap().record.kid.clone();
    let r = r.rotate(&POLICY, 4000, false, ed(KeyState::Next, 4000)).unwrap();
    assert_eq!(r.active().unwrap().record.kid, old_next);
    assert_eq!(r.active().unwrap().record.activated_at, Some(4000));
    let states: Vec<_> = r.keys().iter().map(|k| k.record.state).collect();
    assert_eq!(states, [KeyState::Next, KeyState::Active, KeyState::Retiring]);
    assert_eq!(r.keys()[2].record.kid, old_active);
    assert_eq!(r.keys()[2].record.deactivated_at, Some(4000));
    // The JWKS follows the same order.
    let snap = r.snapshot().unwrap();
    let kids: Vec<_> = snap.jwks.keys.iter().map(|k| k.kid.clone().unwrap()).collect();
    let ring_kids: Vec<_> = r.keys().iter().map(|k| k.record.kid.clone()).collect();
    assert_eq!(kids, ring_kids);
    assert_eq!(snap.signer.kid, old_next);
}

#[test]
fn prune_drops_only_retiring_keys_past_their_time() {
    let r = ring(0).rotate(&POLICY, 4000, false, ed(KeyState::Next, 4000)).unwrap();
    let r = r.rotate(&POLICY, 8000, false, ed(KeyState::Next, 8000)).unwrap();
    // retiring keys deactivated at 4000 and 8000
    let (r, gone) = r.prune(&POLICY, 4000 + POLICY.retire_after - 1);
    assert!(gone.is_empty());
    let (r, gone) = r.prune(&POLICY, 4000 + POLICY.retire_after);
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].deactivated_at, Some(4000));
    assert_eq!(r.keys().len(), 3);
    let (r, gone) = r.prune(&POLICY, i64::MAX);
    assert_eq!(gone.len(), 1);
    assert!(r.active().is_some() && r.next().is_some());
}

#[test]
fn invariants_are_checked() {
    assert!(KeyRing::from_keys(vec![ed(KeyState::Next, 0)]).is_err());
    assert!(KeyRing::from_keys(vec![ed(KeyState::Active, 0), ed(KeyState::Active, 0)]).is_err());
    // a record whose kid is not the key's thumbprint is refused
    let a = ed(KeyState::Active, 0);
    let other = SigningKey::generate(Algorithm::EdDSA, 0).unwrap().0;
    assert_eq!(
        RingKey::new(a.record.clone(), other).unwrap_err().code(),
        "keyring_corrupt"
    );
}

#[test]
fn scheduled_rotation_respects_both_rules() {
    let r = ring(0);
    assert_eq!(r.scheduled_rotation_at(&POLICY), Some(POLICY.rotate_every));
    let fast = RingPolicy {
        rotate_every: 10,
        ..POLICY
    };
    assert_eq!(r.scheduled_rotation_at(&fast), Some(3600));
}
