//! The Lua scripts of the Redis store: every check-and-set step that must
//! be atomic across instances. Each script states its KEYS and ARGV; the
//! Rust side that calls it is in the parent module.
//!
//! Numbers go back to Redis through `%d`: Lua's own number-to-string
//! conversion may use an exponent, which `PXAT` rejects.

/// Keeps the later `revoked_at` and the later `until` of the old and new
/// revocation, so an instance with a slow clock never narrows one.
pub(super) const REVOKE_LUA: &str = r#"
local at, untl = tonumber(ARGV[1]), tonumber(ARGV[2])
local old = redis.call('GET', KEYS[1])
if old then
  local oa, ou = string.match(old, '^(%-?%d+) (%-?%d+)$')
  if oa then
    at = math.max(at, tonumber(oa))
    untl = math.max(untl, tonumber(ou))
  end
end
redis.call('SET', KEYS[1], string.format('%d %d', at, untl), 'PXAT', string.format('%d', untl * 1000))
return 1
"#;

/// KEYS: revoked-jti, revoked-sub, mark, epoch. ARGV: now, iat, mark PXAT
/// ms, the mark's value (`1`, or `r:<retry key>`).
///
/// A missing epoch means this Redis lost its state since an instance
/// connected (connect writes it; it never expires): a new epoch, `now + 1`,
/// is written at once. Then reads the revocations as `is_revoked` does (an
/// entry is `"<revoked_at> <until>"`, in force while `now < until`; a `sub`
/// entry covers `iat <= revoked_at`; an unreadable entry is an error, never
/// "not revoked"), refuses a token issued before the epoch, and marks as
/// `mark_once` does. A revoked or refused token is not marked. Answers
/// `{outcome, 1 if this call wrote the epoch else 0, epoch}`.
pub(super) const CONSUME_LUA: &str = r#"
local now, iat = tonumber(ARGV[1]), tonumber(ARGV[2])
local r = redis.call('MGET', KEYS[1], KEYS[2], KEYS[4])
local epoch, reset = r[3], 0
if not epoch then
  epoch = string.format('%d', now + 1)
  redis.call('SET', KEYS[4], epoch)
  reset = 1
end
epoch = tonumber(epoch)
if not epoch then
  return redis.error_reply('ERR tokensmith: unreadable epoch')
end
for i = 1, 2 do
  if r[i] then
    local at, untl = string.match(r[i], '^(%-?%d+) (%-?%d+)$')
    if not at then
      return redis.error_reply('ERR tokensmith: unreadable revocation entry')
    end
    if tonumber(untl) > now and (i == 1 or iat <= tonumber(at)) then
      return {'revoked', reset, epoch}
    end
  end
end
if iat < epoch then
  return {'lost', reset, epoch}
end
if redis.call('SET', KEYS[3], ARGV[4], 'NX', 'PXAT', ARGV[3]) then
  return {'first', reset, epoch}
end
if ARGV[4] ~= '1' and redis.call('GET', KEYS[3]) == ARGV[4] then
  return {'retried', reset, epoch}
end
return {'replayed', reset, epoch}
"#;

/// INCR and its expiry in one step, so a counter never outlives its window.
pub(super) const RATE_LUA: &str = r#"
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return n
"#;

/// ARGV: record JSON, family, expires_at, family_expires_at, ttl, PXAT ms.
pub(super) const REFRESH_INSERT_LUA: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('ERR tokensmith: refresh token hash is already stored')
end
redis.call('HSET', KEYS[1], 'rec', ARGV[1], 'fam', ARGV[2], 'exp', ARGV[3], 'fexp', ARGV[4], 'ttl', ARGV[5])
redis.call('PEXPIREAT', KEYS[1], ARGV[6])
return 1
"#;

/// KEYS: the presented token, its successor. ARGV: now, family key prefix,
/// and on a cluster `taken` when the successor's hash is indexed to
/// another family (a spend then fails as if the successor were stored).
/// The order of checks is the one documented on `Store::refresh_spend`.
/// The successor copies the record JSON verbatim: Lua never re-encodes it.
pub(super) const REFRESH_SPEND_LUA: &str = r#"
local now = tonumber(ARGV[1])
local t = redis.call('HMGET', KEYS[1], 'rec', 'fam', 'exp', 'fexp', 'ttl', 'spent')
if not t[1] then return {'unknown'} end
local fam, exp, fexp, ttl = t[2], tonumber(t[3]), tonumber(t[4]), tonumber(t[5])
local fkey = ARGV[2] .. fam
if redis.call('EXISTS', fkey) == 1 then return {'revoked'} end
if fexp <= now then return {'unknown'} end
if t[6] then
  redis.call('SET', fkey, '1', 'PXAT', string.format('%d', fexp * 1000))
  return {'reused'}
end
if exp <= now then return {'unknown'} end
if KEYS[2] == KEYS[1] or ARGV[3] == 'taken' or redis.call('EXISTS', KEYS[2]) == 1 then
  return redis.error_reply('ERR tokensmith: refresh successor hash is already stored')
end
redis.call('HSET', KEYS[1], 'spent', '1')
local next_exp = math.min(now + ttl, fexp)
redis.call('HSET', KEYS[2], 'rec', t[1], 'fam', fam, 'exp', string.format('%d', next_exp), 'fexp', t[4], 'ttl', t[5])
redis.call('PEXPIREAT', KEYS[2], string.format('%d', fexp * 1000))
return {'spent', t[1], t[3]}
"#;

/// A cluster's consume, the part on the mark's slot. KEYS: mark, the
/// bucket's epoch. ARGV: now, iat, mark PXAT ms, the mark's value.
///
/// The epoch as in [`CONSUME_LUA`]; then marks as `mark_once` does. The
/// revocations are read after this script (they live on other slots):
/// see "Redis Cluster" in the parent module for why that order keeps the
/// contract. Answers `{outcome, 1 if this call wrote the epoch else 0,
/// epoch}`.
pub(super) const CONSUME_MARK_LUA: &str = r#"
local now, iat = tonumber(ARGV[1]), tonumber(ARGV[2])
local epoch, reset = redis.call('GET', KEYS[2]), 0
if not epoch then
  epoch = string.format('%d', now + 1)
  redis.call('SET', KEYS[2], epoch)
  reset = 1
end
epoch = tonumber(epoch)
if not epoch then
  return redis.error_reply('ERR tokensmith: unreadable epoch')
end
if iat < epoch then
  return {'lost', reset, epoch}
end
if redis.call('SET', KEYS[1], ARGV[4], 'NX', 'PXAT', ARGV[3]) then
  return {'first', reset, epoch}
end
if ARGV[4] ~= '1' and redis.call('GET', KEYS[1]) == ARGV[4] then
  return {'retried', reset, epoch}
end
return {'replayed', reset, epoch}
"#;

/// Removes a mark this consume placed, found revoked afterwards. KEYS: the
/// mark. ARGV: the value this consume wrote. Another consume's mark (a
/// different value) is left alone.
pub(super) const UNMARK_LUA: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// Records the epoch `ARGV[1]` under `KEYS[1]` unless one is there, and
/// holds the previous layouts' epochs `KEYS[2..]` (same slot) at `ARGV[2]`,
/// a far-future epoch, so that earlier versions refuse every consume (see
/// "The layouts before this one" in `layout.rs`); answers `{1 if written
/// else 0, the epoch in force}`.
pub(super) const EPOCH_INIT_LUA: &str = r#"
local written = redis.call('SET', KEYS[1], ARGV[1], 'NX') and 1 or 0
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], ARGV[2])
end
return {written, redis.call('GET', KEYS[1])}
"#;
