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
-- Loaded after _records.lua (the records' formats and the portal-wide steps),
-- _policy.lua (a policy compiled) and _account.lua (fixed windows and the account
-- step), as one library.
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
--     invalid, miss, status, unlock, since (when the store started watching the
--     portal: set once, read by each process now and then)
--   2 now in seconds, or "" for the server's clock (TIME); with simulated time,
--     "<now> <shift>": expiries are shifted by `shift` onto the server's clock
--   3 the policy's digest (nirguard/_compiled.py: lua_digest); the policy itself
--     (lua_policy) comes as ARGV 8 only when the server does not know the digest yet
--   4 flags: patient, cohort, reason ("1" or "0"), then what to do of a new
--     patient's cohort heat: "1" its step here, "2" ask for it (the reply "heat"),
--     "3" it is given in ARGV 7 ("hot heat expected neighbours"), "4" decide without it
--     and say whether it is to be counted (while the store warms up no cohort is hot, so
--     the heat changes nothing the account decides; not with `sequence` on, whose
--     neighbours come from the heat record), "0" nothing; then "1" while
--     the store warms up (hot_cohort_warmup: heat is learned, no cohort is hot); then
--     the patient's place bucket for the baseline (2 hex digits, "ff" = unknown); then,
--     when the lookup carries a session, its fingerprint (12 hex digits, _sessions.lua)
--   5 the patient's fingerprint (6 bytes, as records hold it), then its neighbours'
--     when `sequence` is on (_sequence.lua), 6 the cohort's
--   7 the heat step's answer, for flag "3" ("hot heat expected neighbours")
--
-- Counters are fixed windows that start at their first hit (as in `limits`):
-- member "<quota>:<seconds>" holds the count and "<quota>:<seconds>:e" the
-- window's end. Every key expires, for garbage collection only: decisions read
-- the stored ends, so a test clock works as well as the server's.
--
-- Reply: a flat array of strings, see nirguard/_redis/codec.py: decision; the mode heat's
-- and the question for the heat are shorter (codec.py: heat).

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

-- the other calls ------------------------------------------------------------------------
local function invalid_step(P, K, now)
  local A = account_of(P, K, {}, now, false)
  local refused = locked(A)
  if refused then return refused end
  local w, count = overflow(A.record, P.invalid, now)
  if w then return lock(A, "invalid_nirs", count, w.amount) end
  hit(A.record, P.invalid, A.changes, now)
  save_account(A)
  return reply("invalid", "invalid_nirs", nil, false, level_of(A.record, now), incident_of(A, {}))
end

local function miss_step(P, K, now)
  local A = account_of(P, K, {}, now, true)
  hit(A.record, P.misses, A.changes, now)
  if P.ratio then bump(A.record, A.changes, "miss_ratio:m", P.ratio_window, now) end
  save_account(A)
  return {"miss"}
end

local STATUS = {"lookups", "distinct", "invalid", "misses", "portal_cohort", "break_glass",
  "strikes"}
local STATUS_NAMES = {"lookups", "distinct_patients", "invalid_nirs", "misses",
  "portal_cohort", "break_glass", "strikes"}

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
  pending = true, miss_ratio = true, strikes = true, incident = true, blc = true,
  sequence = true, sequence_new = true, sequence_ctl = true, session = true}

local function unlock_step(P, K, now)
  local raw = redis.call("GET", K[1])
  if not raw then return {"unlocked"} end
  local record, kept = load(K, 1, P.account), {}
  for name, value in pairs(record) do
    local quota = P.account.quota[name] or string.match(name, "^[^:]+")
    if not FORGOTTEN[quota] then kept[name] = value end
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
  local space = string.find(A[2], " ", 1, true) -- "<now> <shift>", or "<now>"
  if not space then
    set_shift(nil)
    return tonumber(A[2])
  end
  set_shift(string.sub(A[2], space + 1))
  return tonumber(string.sub(A[2], 1, space - 1))
end

-- a lookup's practitioner step (with the portal quota first on a single node). A locked
-- account heats nothing: its lockout is read before the heat is counted or asked for. On
-- a Cluster the question for the heat (flag "2") reads the patient first: a repeat is
-- decided at once, and for a new patient only the lockout field is read, not the whole
-- record (the call after the heat loads it); otherwise the record is loaded once
local function lookup_step(mode, P, K, A, flags, now)
  if mode == "admit" and #P.portal > 0 then
    local denied = quota_step(P, K, now)
    if denied then return denied end
  end
  fetch(K, 1, 2)
  local x, record = {hot = false, cold = flags.cold}, nil
  if flags.heat == "2" then
    local seen, asked = patient_step(P, K, flags, flags.fp, x, now)
    local until_ = asked and field(K, 1, P.account, "lockout")
    if not asked or (until_ or 0) <= now then
      return asked or account_step(P, K, flags, flags.fp, x, seen, now)
    end
    flags.heat = "0" -- locked: decided here, and the patient heats nothing
    return account_step(P, K, flags, flags.fp, x, seen, now)
  elseif flags.heat == "1" or flags.heat == "4" then
    local locked_now
    locked_now, record = is_locked(P, K, now)
    if locked_now then flags.heat = "0" end
  elseif flags.heat == "3" then
    local hot, s, e, adj = string.match(A[7], "^(%S+) (%S+) (%S+) (%S+)$")
    x.hot, x.s, x.e, x.adj = hot == "1", tonumber(s), tonumber(e), tonumber(adj)
  end
  local seen, asked = patient_step(P, K, flags, flags.fp, x, now)
  return asked or account_step(P, K, flags, flags.fp, x, seen, now, record)
end

local function step(mode, P, K, A, flags, now)
  if mode == "admit" or mode == "account" then
    return lookup_step(mode, P, K, A, flags, now)
  elseif mode == "heat" then
    local x = {hot = false, cold = flags.cold}
    local raw = redis.call("GET", K[3])
    if #P.seq > 0 then x.adj = seq_near(raw, flags.nb, now) end
    heat_step(P, K[3], raw, flags.fp, x, now)
    return {"heat", x.hot and 1 or 0, x.alert and 1 or 0, milli(x.s), milli(x.e), x.adj or 0}
  elseif mode == "since" then -- when the store started watching the portal (warm-up)
    local kept = redis.call("GET", K[1]) or string.format("%.3f", now)
    local how, when = expiry(now + 4 * P.hot_baseline, now) -- each read keeps it
    redis.call("SET", K[1], kept, how, when)
    return {"since", kept}
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
  local patient, cohort, reason, _, cold = string.byte(f, 1, 5) -- 49: "1"
  local flags = {
    patient = patient == 49, cohort = cohort == 49, reason = reason == 49,
    heat = string.sub(f, 4, 4), cfp = A[6], fp = string.sub(A[5], 1, 6),
    nb = string.sub(A[5], 7), cold = cold == 49, place = tonumber(string.sub(f, 6, 7), 16) or 255,
    ses = "",
  }
  if #f > 7 then -- the session's fingerprint, in hex (_sessions.lua)
    flags.ses = string.gsub(string.sub(f, 8), "%x%x",
      function(h) return string.char(tonumber(h, 16)) end)
  end
  return step(A[1], P, K, A, flags, now)
end
