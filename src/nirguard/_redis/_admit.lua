-- nirguard: the whole decision of one lookup, atomically, on the server.
--
-- This is the Redis twin of nirguard/_memory.py: both implement the same steps
-- with the same names, and one test suite runs every decision scenario against
-- both. Read them side by side.
--
-- Loaded as a Redis Function library (Redis 7+: FUNCTION LOAD, then FCALL), so
-- the helpers below are defined once and a compiled policy is cached by its text;
-- on older servers the same body runs through EVALSHA (nirguard/_redis.py adds
-- the one line that differs).
--
-- Loaded after _records.lua (the records' formats and the portal-wide steps) and
-- _policy.lua (a policy compiled), as one library.
--
-- KEYS (a call's keys are all in one slot: on a Cluster the client makes one call
-- per slot a lookup needs, and fills the unused places with a key of that slot)
--   1 account  windowed counters, lockout, escalation, pending reason request
--   2 recent   the practitioner's recent patients, grants and cohort walks
--   3 heat     the cohort's heat and the patients it counted lately
--   4 portal   the portal-wide `portal` quota
--
-- ARGV
--   1 mode: admit (every step, one call), or on a Cluster: quota (the portal
--     quota's slot), account (the practitioner's), heat (the cohort's); and
--     invalid, miss, status, unlock
--   2 now in seconds, or "" for the server's clock (TIME); with simulated time,
--     "<now> <shift>": expiries are shifted by `shift` onto the server's clock
--   3 the policy's digest (nirguard/_compiled.py: lua_digest); the policy itself
--     (lua_policy) comes as ARGV 8 only when the server does not know the digest yet
--   4 flags: patient, cohort, reason ("1" or "0"), then what to do of a new
--     patient's cohort heat: "1" its step here, "2" ask for it (the reply "heat"),
--     "3" it is given in ARGV 7 ("hot heat expected"), "0" nothing; then the
--     patient's place bucket for the baseline (2 hex digits, "ff" = unknown)
--   5 the patient's fingerprint (12 hex digits: 6 bytes in records), 6 the cohort's
--   7 the heat step's answer, for flag "3"
--
-- Counters are fixed windows that start at their first hit (as in `limits`):
-- member "<quota>:<seconds>" holds the count and "<quota>:<seconds>:e" the
-- window's end. Every key expires, for garbage collection only: decisions read
-- the stored ends, so a test clock works as well as the server's.
--
-- Reply: a flat array of strings, see nirguard/_redis/codec.py: decision.

-- fixed windows --------------------------------------------------------------------------
local function used(record, w, now)
  local ends = record[w.ends]
  if ends and ends > now then return record[w.field] or 0 end
  return 0
end

-- the first window that one more hit would overflow, and its count after the hit
local function overflow(record, group, now)
  for i = 1, #group do
    local w = group[i]
    local count = used(record, w, now) + 1
    if count > w.amount then return w, count end
  end
  return nil
end

local function hit(record, group, changes, now)
  for i = 1, #group do
    local w = group[i]
    local ends = record[w.ends]
    if ends and ends > now then
      changes[w.field] = (record[w.field] or 0) + 1
    else
      changes[w.field] = 1
      changes[w.ends] = now + w.seconds
    end
  end
end

local function left(record, group, now)
  local least = nil
  for i = 1, #group do
    local w = group[i]
    local rest = w.amount - used(record, w, now)
    if least == nil or rest < least then least = rest end
  end
  return least
end

local function bump(record, changes, name, seconds, now)
  if (record[name .. ":e"] or 0) > now then
    changes[name] = (record[name] or 0) + 1
  else
    changes[name] = 1
    changes[name .. ":e"] = now + seconds
  end
end

-- the portal quota ------------------------------------------------------------------------
local function quota_step(P, K, now)
  local record = load(K, 4, P.portal_layout)
  local w = overflow(record, P.portal, now)
  if w then return reply("denied", "portal", record[w.ends] - now, false, 0, NOTHING) end
  local changes = {}
  hit(record, P.portal, changes, now)
  save(K[4], record, changes, now + P.portal_keep, now, P.portal_layout)
  return nil
end

-- the account: lockout, budgets, new patients, break-glass --------------------------------
local function save_account(P, K, record, changes, now)
  local at = now + P.keep
  local until_ = changes.lockout or record.lockout
  if until_ and until_ + 60 > at then at = until_ + 60 end
  save(K[1], record, changes, at, now, P.account)
end

local function level_of(record, now)
  local ends = record["lockout_level:e"]
  if ends and ends > now then return record.lockout_level or 0 end
  return 0
end

local function lock(P, K, record, changes, quota, count, limit, x, now)
  local level = level_of(record, now)
  local step = P.lockout[math.min(level + 1, #P.lockout)]
  local seconds = nil
  if step >= 0 then seconds = step end
  changes.lockout = now + (seconds or INDEFINITE)
  changes.lockout_level = level + 1
  changes["lockout_level:e"] = now + P.lockout_memory
  changes["pending:e"] = 0
  save_account(P, K, record, changes, now)
  local outcome = "denied"
  if quota == "cohort" or quota == "portal_cohort" or quota == "miss_ratio"
    or quota == "baseline" then
    outcome = "suspected"
  end
  x.count, x.limit = count, limit
  return reply(outcome, quota, seconds, true, level + 1, x)
end

local function locked(record, now)
  local until_ = record.lockout
  if until_ and until_ > now then
    local retry = until_ - now
    if retry > INDEFINITE / 2 then retry = nil end
    return reply("locked", "locked", retry, false, level_of(record, now), NOTHING)
  end
  return nil
end

local function account_step(P, K, flags, patient_id, x, seen, now)
  local record = load(K, 1, P.account)
  local changes = {}
  local refused = locked(record, now)
  if refused then return refused end
  for i = 1, #P.misses do
    local w = P.misses[i]
    local count = used(record, w, now)
    if count >= w.amount then return lock(P, K, record, changes, "misses", count, w.amount, x, now) end
  end
  if P.ratio then
    local n, m = 0, 0
    if (record["miss_ratio:n:e"] or 0) > now then n = record["miss_ratio:n"] or 0 end
    if (record["miss_ratio:m:e"] or 0) > now then m = record["miss_ratio:m"] or 0 end
    if n >= P.ratio_min and m / n > P.ratio then
      return lock(P, K, record, changes, "miss_ratio", m, n, x, now)
    end
  end
  local w = overflow(record, P.lookups, now)
  if w then
    return reply("denied", "lookups", record[w.ends] - now, false, level_of(record, now), x)
  end
  local r, granted, new = seen.r, seen.granted, seen.new
  local slot = 0
  if P.baseline then -- the baseline's day rolls (_baseline.lua)
    local day
    day, slot = bl_clock(P, now)
    for name, value in pairs(bl_roll(record, P, day)) do changes[name] = value end
  end
  local walked = {}
  local breach, count, limit = nil, nil, nil
  if new then
    local over, c = overflow(record, P.distinct, now)
    if over then breach, count, limit = "distinct_patients", c, over.amount end
    if not breach and flags.cohort and #P.cohort > 0 then
      walked = walk_of(r, flags.cfp, P.cohort, now)
      over, c = overflow(walked, P.cohort, now)
      if over then breach, count, limit = "cohort", c, over.amount end
    end
    if not breach and x.hot then
      for i = 1, #P.portal_cohort do
        local pw = P.portal_cohort[i]
        local hot_new = used(record, pw, now) + 1
        local all_new = used(record, P.new[i], now) + 1
        if hot_new > pw.amount and hot_new >= P.share * all_new then
          breach, count, limit = "portal_cohort", hot_new, pw.amount
          break
        end
      end
      if not breach and P.hot_reason then breach = "hot_cohort" end
    end
    if not breach and P.baseline then
      local b = bl_breach(bl_merged(record, changes), P, slot, flags.place)
      if b then
        breach, count, limit = "baseline", b.n, b.u
        changes["blx"] = 1 -- the day breached: it rolls in at the CUSUM's cap
        x.bl_mu, x.bl_h, x.bl_off = b.mu, b.h, b.off
      end
    end
  end
  if breach then
    if #P.break_glass == 0 then
      return lock(P, K, record, changes, breach, count, limit, x, now)
    end
    if flags.reason then
      if overflow(record, P.break_glass, now) then
        if breach == "hot_cohort" then
          return reply("denied", "break_glass", nil, false, level_of(record, now), x)
        end
        return lock(P, K, record, changes, breach, count, limit, x, now)
      end
      x.bg_left = left(record, P.break_glass, now) - 1
      hit(record, P.lookups, changes, now)
      hit(record, P.break_glass, changes, now)
      changes["pending:e"] = 0 -- the question was answered
      if P.ratio then bump(record, changes, "miss_ratio:n", P.ratio_window, now) end
      save_account(P, K, record, changes, now)
      r.grants = add(r.grants, patient_id, now + P.access, now)
      save_recent(K[2], r, now + P.access, now)
      x.count, x.limit = count, limit
      return reply("break_glass", breach, nil, false, level_of(record, now), x)
    end
    if breach ~= "hot_cohort" then
      local pending = record.pending
      if (record["pending:e"] or 0) > now and pending ~= nil and pending ~= patient_id then
        return lock(P, K, record, changes, breach, count, limit, x, now)
      end
      changes.pending = patient_id
      changes["pending:e"] = now + P.lockout[1]
      save_account(P, K, record, changes, now)
    end
    x.count, x.limit = count, limit
    return reply("reason_required", breach, nil, false, level_of(record, now), x)
  end
  hit(record, P.lookups, changes, now)
  if P.ratio then bump(record, changes, "miss_ratio:n", P.ratio_window, now) end
  if P.baseline then bl_count(bl_merged(record, changes), changes, new, slot, flags.place) end
  if new then
    hit(record, P.distinct, changes, now)
    hit(record, P.new, changes, now)
    if x.hot then hit(record, P.portal_cohort, changes, now) end
    local last = now + P.seen
    if flags.cohort and #P.cohort > 0 then
      local wchanges = {}
      hit(walked, P.cohort, wchanges, now)
      last = math.max(last, save_walk(r, flags.cfp, walked, wchanges, P.cohort, now))
    end
    r.seen = add(r.seen, patient_id, now + P.seen, now)
    save_recent(K[2], r, last, now)
  end
  save_account(P, K, record, changes, now)
  local quota = nil
  if granted then quota = "break_glass" end
  return reply("allowed", quota, nil, false, level_of(record, now), x)
end

-- the other calls ------------------------------------------------------------------------
local function invalid_step(P, K, now)
  local record = load(K, 1, P.account)
  local refused = locked(record, now)
  if refused then return refused end
  local changes = {}
  local w, count = overflow(record, P.invalid, now)
  if w then return lock(P, K, record, changes, "invalid_nirs", count, w.amount, {}, now) end
  hit(record, P.invalid, changes, now)
  save_account(P, K, record, changes, now)
  return reply("invalid", "invalid_nirs", nil, false, level_of(record, now), NOTHING)
end

local function miss_step(P, K, now)
  local record = load(K, 1, P.account)
  local changes = {}
  hit(record, P.misses, changes, now)
  if P.ratio then bump(record, changes, "miss_ratio:m", P.ratio_window, now) end
  save_account(P, K, record, changes, now)
  return {"miss"}
end

local STATUS = {"lookups", "distinct", "invalid", "misses", "portal_cohort", "break_glass"}
local STATUS_NAMES = {"lookups", "distinct_patients", "invalid_nirs", "misses",
  "portal_cohort", "break_glass"}

local function status_step(P, K, portal_keys, now)
  local record = load(K, 1, P.account)
  local out = {}
  for i, name in ipairs(STATUS) do
    local rest = left(record, P[name], now)
    out[#out + 1] = STATUS_NAMES[i]
    out[#out + 1] = rest and tostring(math.max(0, rest)) or ""
  end
  if #P.portal > 0 and portal_keys then
    out[#out + 1] = "portal"
    out[#out + 1] = tostring(math.max(0, left(load(K, 4, P.portal_layout), P.portal, now)))
  end
  local until_ = record.lockout
  out[#out + 1] = "locked_for"
  out[#out + 1] = (until_ and until_ > now) and tostring(until_ - now) or ""
  out[#out + 1] = "level"
  out[#out + 1] = tostring(level_of(record, now))
  if P.baseline then bl_summary(record, P, now, out) end
  return out
end

local FORGOTTEN = {distinct_patients = true, invalid_nirs = true, misses = true,
  portal_cohort = true, new_patients = true, lockout = true, lockout_level = true,
  pending = true, miss_ratio = true, blc = true}

local function unlock_step(P, K, now)
  local raw = redis.call("GET", K[1])
  if not raw then return {"unlocked"} end
  local record, kept = load(K, 1, P.account), {}
  for name, value in pairs(record) do
    if not FORGOTTEN[string.match(name, "^[^:]+")] then kept[name] = value end
  end
  if P.baseline then kept.blx = -1 end -- the baseline forgives the day (_baseline.lua)
  local ttl = redis.call("PTTL", K[1])
  if next(kept) == nil or ttl <= 0 then
    redis.call("DEL", K[1])
  else
    save(K[1], {}, kept, now + ttl / 1000, now, P.account)
  end
  return {"unlocked"}
end

-- the entry point ------------------------------------------------------------------------
local function clock(A)
  if A[2] == "" then
    set_shift(nil)
    local t = redis.call("TIME")
    return tonumber(t[1]) + tonumber(t[2]) / 1000000
  end
  local now, shift = string.match(A[2], "^(%S+)%s*(%S*)$")
  set_shift(shift)
  return tonumber(now)
end

local function step(mode, P, K, A, flags, now)
  if mode == "admit" then
    if #P.portal > 0 then
      local denied = quota_step(P, K, now)
      if denied then return denied end
    end
    fetch(K, 1, 2)
    local x = {hot = false}
    local seen, asked = patient_step(P, K, flags, flags.fp, x, now)
    return asked or account_step(P, K, flags, flags.fp, x, seen, now)
  elseif mode == "account" then
    fetch(K, 1, 2)
    local x = {hot = false}
    if flags.heat == "3" then
      local hot, s, e = string.match(A[7], "^(%S+) (%S+) (%S+)$")
      x.hot, x.s, x.e = hot == "1", tonumber(s), tonumber(e)
    end
    local seen, asked = patient_step(P, K, flags, flags.fp, x, now)
    return asked or account_step(P, K, flags, flags.fp, x, seen, now)
  elseif mode == "heat" then
    local x = {hot = false}
    heat_step(P, K[3], redis.call("GET", K[3]), flags.fp, x, now)
    return reply("heat", nil, nil, false, 0, x)
  elseif mode == "quota" then
    return quota_step(P, K, now) or reply("quota", nil, nil, false, 0, NOTHING)
  elseif mode == "invalid" then
    return invalid_step(P, K, now)
  elseif mode == "miss" then
    return miss_step(P, K, now)
  elseif mode == "status" then
    return status_step(P, K, flags.heat == "1", now)
  elseif mode == "unlock" then
    return unlock_step(P, K, now)
  end
  return redis.error_reply("nirguard: unknown mode")
end

local function main(K, A)
  local now = clock(A)
  fetched = {}
  local P = policy_of(A[3], A[8])
  if P == nil then return redis.error_reply("NOPOLICY nirguard: send the policy") end
  local f = A[4]
  local flags = {
    patient = string.sub(f, 1, 1) == "1", cohort = string.sub(f, 2, 2) == "1",
    reason = string.sub(f, 3, 3) == "1", heat = string.sub(f, 4, 4), cfp = unhex(A[6]),
    fp = unhex(A[5]), place = tonumber(string.sub(f, 5, 6), 16) or 255,
  }
  return step(A[1], P, K, A, flags, now)
end
