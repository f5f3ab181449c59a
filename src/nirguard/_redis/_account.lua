-- nirguard: the account step of a lookup, the Redis twin of nirguard/_memory_account.py.
--
-- Loaded after _records.lua and _policy.lua and before _admit.lua, as one library:
-- fixed windows, then one practitioner's record decided in one call (lockout,
-- budgets, a new patient's quotas and signals, break-glass, strikes, incidents).
--
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

-- the account: lockout, budgets, new patients, break-glass --------------------------------
-- A: the account's record while one call decides it (read once, written once): P, K, the
-- record, its changes, x (what the reply carries), now, and whether a refusal counts
-- against `lookups` (a lookup; not an invalid NIR). Every refusal of the account counts
-- against `lookups`; a refusal that is not a lockout is a strike, and the strike past the
-- `strikes` quota is a lockout instead (docs/guard.md, "What a refusal costs").
local SIGNAL = {cohort = true, portal_cohort = true, miss_ratio = true, baseline = true,
  sequence = true, session = true}
-- the pending question after a lockout: asked again of the next new patient
local ASK_AGAIN = ""
-- the patients refused during the account's lockout, whose retries while it lasts are
-- strikes: the fingerprint of the one whose refusal started it, then of those refused
-- while locked, up to STRUCK_MAX (the first ones kept), 6 bytes each; written anew at
-- each lockout (the twin of nirguard/_memory_account.py: STRUCK)
local STRUCK, STRUCK_MAX = "strikes:p", 4
-- the fingerprint of an invalid number: every invalid number is one patient here
local INVALID = "\0\0\0\0\0\0"

-- `record`: the account's record when this call already loaded it (see is_locked); `fp`:
-- the patient's fingerprint (INVALID for an invalid number)
local function account_of(P, K, x, now, lookups, record, fp)
  return {P = P, K = K, record = record or load(K, 1, P.account), changes = {}, x = x,
    now = now, lookups = lookups, fp = fp or INVALID}
end

-- whether the account is locked now, and its record (loaded once: the account step takes
-- it): a locked account's attempts are no evidence about cohorts (a bot that keeps asking
-- while locked would heat them and trip ordinary accounts)
local function is_locked(P, K, now)
  local record = load(K, 1, P.account)
  local until_ = record.lockout
  return until_ ~= nil and until_ > now, record
end

-- a field as this call leaves it (its change, else the stored value)
local function get(A, name)
  local v = A.changes[name]
  if v == nil then v = A.record[name] end
  return v
end

local function save_account(A)
  local at = A.now + A.P.keep
  local until_ = get(A, "lockout")
  if until_ and until_ + 60 > at then at = until_ + 60 end
  save(A.K[1], A.record, A.changes, at, A.now, A.P.account)
end

local function level_of(record, now)
  local ends = record["lockout_level:e"]
  if ends and ends > now then return record.lockout_level or 0 end
  return 0
end

-- open the account's incident (unless one is open) and keep it open to `until_`
local function incident(A, until_)
  local ends = get(A, "incident:e") or 0
  if ends <= A.now then
    A.changes.incident = A.now
    A.x.opens = true
    ends = 0
  end
  A.changes["incident:e"] = math.max(ends, until_)
end

-- the account's open incident into `out` (the reply's x), if any
local function incident_of(A, out)
  if (get(A, "incident:e") or 0) > A.now then out.incident = get(A, "incident") end
  return out
end

-- start a lockout (escalated), counted against `lookups`; it opens an incident
local function lock(A, quota, count, limit)
  local P, now, record, changes, x = A.P, A.now, A.record, A.changes, A.x
  local level = level_of(record, now)
  local step = P.lockout[math.min(level + 1, #P.lockout)]
  local seconds = nil
  if step >= 0 then seconds = step end
  local until_ = now + (seconds or INDEFINITE)
  changes.lockout = until_
  changes.lockout_level = level + 1
  changes["lockout_level:e"] = now + P.lockout_memory
  if #P.seq > 0 then seq_remember(changes, P, quota, now) end
  for i = 1, #P.strikes do -- the lockout is the price of the strikes before it
    changes[P.strikes[i].field], changes[P.strikes[i].ends] = 0, 0
  end
  if #P.strikes > 0 then changes[STRUCK] = A.fp end -- its retries while locked: strikes
  if (record["pending:e"] or 0) > now and record.pending ~= nil then
    -- a lockout does not answer the question: it is asked again when it ends
    changes.pending = ASK_AGAIN
    changes["pending:e"] = until_ + math.max(P.lockout[1], 0)
  else
    changes["pending:e"] = 0
  end
  if A.lookups then hit(record, P.lookups, changes, now) end
  incident(A, math.max(until_, now + P.lockout_memory))
  save_account(A)
  local outcome = "denied"
  if SIGNAL[quota] then outcome = "suspected" end
  x.count, x.limit = count, limit
  return reply(outcome, quota, seconds, true, level + 1, incident_of(A, x))
end

-- a refusal that is not a lockout: it counts against `lookups` and `strikes`; the strike
-- past the `strikes` quota is a lockout instead
local function strike(A, outcome, quota, retry, count, limit)
  local P, now, record, changes, x = A.P, A.now, A.record, A.changes, A.x
  local w, c = overflow(record, P.strikes, now)
  if w then return lock(A, "strikes", c, w.amount) end
  hit(record, P.lookups, changes, now)
  hit(record, P.strikes, changes, now)
  save_account(A)
  x.count, x.limit = count, limit
  return reply(outcome, quota, retry, false, level_of(record, now), incident_of(A, x))
end

-- whether fingerprint `fp` is one of the 6-byte fingerprints packed in `list`
local function struck(list, fp)
  for i = 1, #list, 6 do
    if string.sub(list, i, i + 5) == fp then return true end
  end
  return false
end

-- the refusal of a locked account, or nil. It counts against `lookups` (a lookup) and,
-- while the lockout can still escalate, a retry (a patient refused during this lockout)
-- is a strike: the strike past `strikes` while locked starts the next lockout of the
-- escalation. Any other patient joins STRUCK
local function locked(A)
  local P, record, now, changes = A.P, A.record, A.now, A.changes
  local until_ = record.lockout
  if not (until_ and until_ > now) then return nil end
  local retry = until_ - now
  if retry > INDEFINITE / 2 then
    retry = nil
  elseif #P.strikes > 0 then
    local list = record[STRUCK] or ""
    if struck(list, A.fp) then
      local w, c = overflow(record, P.strikes, now)
      if w then return lock(A, "strikes", c, w.amount) end
      hit(record, P.strikes, changes, now)
    elseif #list < 6 * STRUCK_MAX then
      changes[STRUCK] = list .. A.fp
    end
  end
  if A.lookups and #P.lookups > 0 then hit(record, P.lookups, changes, now) end
  if next(changes) ~= nil then save_account(A) end
  return reply("locked", "locked", retry, false, level_of(record, now), incident_of(A, {}))
end

-- the account's budgets before any lookup: misses, miss ratio, `lookups`
local function budgets(A)
  local P, now, record = A.P, A.now, A.record
  for i = 1, #P.misses do
    local w = P.misses[i]
    local count = used(record, w, now)
    if count >= w.amount then return lock(A, "misses", count, w.amount) end
  end
  if P.ratio then
    local n, m = 0, 0
    if (record["miss_ratio:n:e"] or 0) > now then n = record["miss_ratio:n"] or 0 end
    if (record["miss_ratio:m:e"] or 0) > now then m = record["miss_ratio:m"] or 0 end
    if n >= P.ratio_min and m / n > P.ratio then return lock(A, "miss_ratio", m, n) end
  end
  local w = overflow(record, P.lookups, now)
  if w then return strike(A, "denied", "lookups", record[w.ends] - now) end
  return nil
end

-- the first quota or signal a new patient would break, its count and limit, and the
-- walk of its cohort (read when the cohort quota is on)
local function breach_of(A, flags, r)
  local P, now, record = A.P, A.now, A.record
  local walked = {}
  local over, c = overflow(record, P.distinct, now)
  if over then return "distinct_patients", c, over.amount, walked end
  if flags.cohort and #P.cohort > 0 then
    walked = walk_of(r, flags.cfp, P.cohort, now)
    over, c = overflow(walked, P.cohort, now)
    if over then return "cohort", c, over.amount, walked end
  end
  if A.x.hot then
    for i = 1, #P.portal_cohort do
      local pw = P.portal_cohort[i]
      local hot_new = used(record, pw, now) + 1
      local all_new = used(record, P.new[i], now) + 1
      if hot_new > pw.amount and hot_new >= P.share * all_new then
        return "portal_cohort", hot_new, pw.amount, walked
      end
    end
    if P.hot_reason then return "hot_cohort", nil, nil, walked end
  end
  return nil, nil, nil, walked
end

-- let a new patient past a quota through with a stated reason (break-glass)
local function grant(A, r, patient_id, breach, count, limit)
  local P, now, record, changes, x = A.P, A.now, A.record, A.changes, A.x
  x.bg_left = left(record, P.break_glass, now) - 1
  hit(record, P.lookups, changes, now)
  hit(record, P.break_glass, changes, now)
  changes["pending:e"] = 0 -- the question was answered
  if P.ratio then bump(record, changes, "miss_ratio:n", P.ratio_window, now) end
  save_account(A)
  r.grants = add(r.grants, patient_id, now + P.access, now)
  save_recent(A.K[2], r, now + P.access, now)
  x.count, x.limit = count, limit
  return reply("break_glass", breach, nil, false, level_of(record, now), incident_of(A, x))
end

-- a new patient past a quota or signal: a lockout, a break-glass grant, or a strike (the
-- question "state a reason", or break-glass refused)
local function breached(A, flags, r, patient_id, breach, count, limit)
  local P, now, record, changes = A.P, A.now, A.record, A.changes
  if SIGNAL[breach] then incident(A, now + P.lockout_memory) end
  if breach == "session" and not flags.reason then -- the others' next new patient too
    ses_mark(changes, P, flags.ses, now) -- (a grant leaves the mark be)
  end
  local spent = overflow(record, P.break_glass, now) ~= nil
  if breach ~= "hot_cohort" and (#P.break_glass == 0 or spent) then
    return lock(A, breach, count, limit)
  end
  if spent then return strike(A, "denied", "break_glass") end -- a hot cohort's question
  if flags.reason then
    ses_see(record, changes, P, flags.ses, now)
    return grant(A, r, patient_id, breach, count, limit)
  end
  if breach ~= "hot_cohort" then
    local pending = record.pending
    if (record["pending:e"] or 0) > now and pending ~= nil and pending ~= patient_id
        and pending ~= ASK_AGAIN then
      return lock(A, breach, count, limit)
    end
    changes.pending, changes["pending:q"] = patient_id, breach
    changes["pending:e"] = now + P.lockout[1]
  end
  return strike(A, "reason_required", breach, nil, count, limit)
end

-- let the lookup through and count it
local function allow(A, flags, seen, patient_id, walked)
  local P, now, record, changes, x = A.P, A.now, A.record, A.changes, A.x
  local r = seen.r
  hit(record, P.lookups, changes, now)
  if P.ratio then bump(record, changes, "miss_ratio:n", P.ratio_window, now) end
  if seen.new then
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
    save_recent(A.K[2], r, last, now)
  end
  save_account(A)
  local quota = nil
  if seen.granted then quota = "break_glass" end
  return reply("allowed", quota, nil, false, level_of(record, now), incident_of(A, x))
end

-- lockout, budgets, then a new patient's quotas and signals, then the lookup
local function account_step(P, K, flags, patient_id, x, seen, now, record)
  local A = account_of(P, K, x, now, true, record, patient_id)
  local refused = locked(A) or budgets(A)
  if refused then return refused end
  local slot = bl_open_day(A.record, A.changes, P, now)
  local walked, adjacent = {}, 0
  if seen.new then
    local breach, count, limit
    breach, count, limit, walked = breach_of(A, flags, seen.r)
    if not breach and flags.ses ~= "" then
      breach, count, limit = ses_check(A.record, A.changes, P, flags.ses, true, now)
    end
    if #P.seq > 0 then
      adjacent = seq_own(x.adj or 0, seen.r, P, flags.nb, now)
      if not breach then
        breach, count, limit = seq_check(A.record, P, adjacent, now)
      end
    end
    if not breach and P.baseline then -- a reason granted below vouches for the day
      local vouched = flags.reason and #P.break_glass > 0
        and overflow(A.record, P.break_glass, now) == nil
      breach, count, limit = bl_check(A.record, A.changes, P, slot, flags.place, x, vouched)
    end
    local record = A.record
    if not breach and (record["pending:e"] or 0) > now and record.pending ~= nil then
      breach = record["pending:q"] or "distinct_patients" -- asked until answered or expired
    end
    if breach then return breached(A, flags, seen.r, patient_id, breach, count, limit) end
  elseif flags.ses ~= "" then -- a repeat: never refused by it, but a return marks the account
    ses_check(A.record, A.changes, P, flags.ses, false, now)
  end
  if P.baseline then
    bl_count(bl_merged(A.record, A.changes), P, A.changes, seen.new, slot, flags.place)
  end
  if #P.seq > 0 and seen.new then seq_count(A.record, A.changes, P, adjacent, now) end
  if flags.ses ~= "" then ses_see(A.record, A.changes, P, flags.ses, now) end
  return allow(A, flags, seen, patient_id, walked)
end

