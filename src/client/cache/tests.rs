//! Tests of `cache`.

use super::*;

fn t(issued_at: i64, expires_at: i64) -> Issued {
    Issued {
        token: "t".into(),
        issued_at,
        expires_at,
    }
}

#[test]
fn renewal_point_is_the_earlier_of_80_percent_and_60_s_but_never_before_half() {
    let o = CacheOptions::default();
    assert_eq!(o.renew_at(&t(1000, 1300)), 1240); // 5 min: both rules agree
    assert_eq!(o.renew_at(&t(1000, 4600)), 3880); // 1 h: 80 % comes first
    assert_eq!(o.renew_at(&t(1000, 1100)), 1050); // 100 s: 60 s before would be 1040, half is 1050
    assert_eq!(o.renew_at(&t(1000, 1000)), 1000);
    assert_eq!(o.renew_at(&t(1000, 900)), 1000);
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    let o = CacheOptions {
        backoff_initial: 1,
        backoff_max: 10,
        ..CacheOptions::default()
    };
    let steps: Vec<i64> = (1..=6).map(|f| o.backoff(f)).collect();
    assert_eq!(steps, [1, 2, 4, 8, 10, 10]);
    assert_eq!(o.backoff(u32::MAX), 10);
}

#[test]
fn issued_debug_never_shows_the_token() {
    let i = Issued {
        token: "eyJsecret".into(),
        issued_at: 1,
        expires_at: 2,
    };
    assert!(!format!("{i:?}").contains("eyJsecret"));
}
