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
-- KEYS (all of one practitioner share the hash tag {practitioner}; all
-- portal-wide keys share {%portal}: on a Cluster each group is one slot). Each
-- record is one MessagePack array (one GET, one SET; see `layout` below)
--   1 account  windowed counters, lockout, escalation, pending reason request
--   2 patient  s = end of the new-patient window, g = end of a break-glass grant
--   3 walk     this practitioner's new patients in this cohort (cohort quota)
--   4 portal   the portal-wide `portal` quota
--   5 seen     u = end of the window in which the portal saw this patient
--   6 heat     decayed counts of the cohort's new patients (s, l), t, alert end
--
-- ARGV
--   1 mode: admit (portal then account, one call), portal, account (a Cluster
--     makes two calls), invalid, miss, status, unlock
--   2 now in seconds, or "" for the server's clock (TIME)
--   3 the policy's digest (nirguard/_compiled.py: lua_digest); the policy itself
--     (lua_policy) comes as ARGV 8 only when the server does not know the digest yet
--   4 flags: patient, cohort, reason, hot (from the portal step, or "portal keys
--     given" for status), each "1" or "0"
--   5 the patient's pseudonym (for the pending reason request)
--   6, 7 heat and expected heat from the portal step (Cluster, mode account)
--
-- Counters are fixed windows that start at their first hit (as in `limits`):
-- member "<quota>:<seconds>" holds the count and "<quota>:<seconds>:e" the
-- window's end. Every key expires, for garbage collection only: decisions read
-- the stored ends, so a test clock works as well as the server's.
--
-- Reply: a flat array of strings, see nirguard/_redis.py: _decision.

local INDEFINITE = 315360000 -- a lockout "until unlock()" (ten years)
local policies = {}          -- compiled policies, by their text (a pure cache)
local policy_count = 0

-- short codes of the quotas, for the layout a record carries
local CODES = {lookups = "l", distinct_patients = "d", invalid_nirs = "i", misses = "m",
  cohort = "c", portal_cohort = "p", new_patients = "n", break_glass = "b", portal = "q"}

local function windows(spec, name, list)
  for amount, seconds in string.gmatch(spec, "(%d+)/(%d+)") do
    list[#list + 1] = {
      amount = tonumber(amount), seconds = tonumber(seconds),
      field = name .. ":" .. seconds, ends = name .. ":" .. seconds .. ":e",
      code = CODES[name] .. seconds,
    }
  end
  return list
end

-- A record is one MessagePack array: its layout (short codes, comma-separated), then
-- its values in that order (false = absent). Arrays are several times cheaper to pack,
-- unpack and move than maps keyed by long names. A record written under another
-- layout (the policy changed) is read by its codes, so nothing is lost.
local function layout(fixed, groups)
  local names, codes, by_code = {}, {}, {}
  for _, pair in ipairs(fixed) do
    names[#names + 1] = pair[1]
    codes[#codes + 1] = pair[2]
  end
  for _, group in ipairs(groups) do
    for _, w in ipairs(group) do
      names[#names + 1] = w.field
      codes[#codes + 1] = w.code
      names[#names + 1] = w.ends
      codes[#codes + 1] = w.code .. "e"
    end
  end
  for i = 1, #names do by_code[codes[i]] = names[i] end
  return {names = names, n = #names, sig = table.concat(codes, ","), by_code = by_code}
end

local ACCOUNT_FIXED = {
  {"lockout", "L"}, {"lockout_level", "V"}, {"lockout_level:e", "Ve"}, {"pending", "P"},
  {"pending:e", "Pe"}, {"miss_ratio:n", "Rn"}, {"miss_ratio:n:e", "Rne"},
  {"miss_ratio:m", "Rm"}, {"miss_ratio:m:e", "Rme"},
}
local PATIENT, HEAT, SEEN -- fixed layouts, made on first use (no library globals at load)

local function px(seconds)
  return string.format("%d", math.ceil(seconds * 1000))
end

local function longest(group)
  local most = 0
  for _, w in ipairs(group) do if w.seconds > most then most = w.seconds end end
  return most
end

-- "lookups|distinct|invalid|misses|cohort|portal_cohort|portal|break_glass|seen|
--  lockout steps|lockout_memory|ratio|ratio_min|ratio_window|share|hot|hot_min|
--  hot_window|hot_baseline|hot_action|access|keep"
local function compile(text)
  local parts = {}
  for part in string.gmatch(text .. "|", "([^|]*)|") do parts[#parts + 1] = part end
  local P = {
    lookups = windows(parts[1], "lookups", {}),
    distinct = windows(parts[2], "distinct_patients", {}),
    invalid = windows(parts[3], "invalid_nirs", {}),
    misses = windows(parts[4], "misses", {}),
    cohort = windows(parts[5], "cohort", {}),
    portal_cohort = windows(parts[6], "portal_cohort", {}),
    new = windows(parts[6], "new_patients", {}),
    portal = windows(parts[7], "portal", {}),
    break_glass = windows(parts[8], "break_glass", {}),
    seen = tonumber(parts[9]),
    lockout = {},
    lockout_memory = tonumber(parts[11]),
    ratio = tonumber(parts[12]),
    ratio_min = tonumber(parts[13]),
    ratio_window = tonumber(parts[14]),
    share = tonumber(parts[15]),
    hot = tonumber(parts[16]),
    hot_min = tonumber(parts[17]),
    hot_window = tonumber(parts[18]),
    hot_baseline = tonumber(parts[19]),
    hot_reason = parts[20] == "reason",
    access = tonumber(parts[21]),
    keep = tonumber(parts[22]),
  }
  for step in string.gmatch(parts[10], "([-%d.]+)") do P.lockout[#P.lockout + 1] = tonumber(step) end
  P.account = layout(ACCOUNT_FIXED,
    {P.lookups, P.distinct, P.invalid, P.misses, P.portal_cohort, P.new, P.break_glass})
  P.walk = layout({}, {P.cohort})
  P.portal_layout = layout({}, {P.portal})
  if not PATIENT then
    PATIENT = layout({{"s", "s"}, {"g", "g"}}, {})
    HEAT = layout({{"s", "s"}, {"l", "l"}, {"t", "t"}, {"a", "a"}}, {})
    SEEN = layout({{"u", "u"}}, {})
  end
  -- expiries as the strings SET ... PX takes (formatting a number is not free)
  P.keep_px = px(P.keep)
  P.portal_px = px(longest(P.portal) + 60)
  P.walk_px = px(longest(P.cohort) + 60)
  P.patient_px = px(math.max(P.seen, P.access) + 60)
  if P.hot then
    P.heat_px = px(4 * P.hot_baseline)
    P.seen_px = px(P.hot_window + 60)
  end
  return P
end

local function policy_of(digest, text)
  local P = policies[digest]
  if P == nil and text ~= nil and text ~= "" then
    if policy_count >= 64 then policies, policy_count = {}, 0 end
    P = compile(text)
    policies[digest] = P
    policy_count = policy_count + 1
  end
  return P
end

-- records: one MessagePack map per key, read once (one MGET for a whole step), written once
local fetched = {}

local function fetch(K, ...)
  local which = {...}
  local keys = {}
  for i = 1, #which do keys[i] = K[which[i]] end
  local values = redis.call("MGET", unpack(keys))
  fetched = {}
  for i = 1, #which do fetched[which[i]] = values[i] end
end

local function load(K, i, L)
  local raw = fetched[i]
  if raw == nil then raw = redis.call("GET", K[i]) end
  local record = {}
  if not raw then return record end
  local a = cmsgpack.unpack(raw)
  if a[1] == L.sig then
    local names = L.names
    for j = 1, L.n do
      local v = a[j + 1]
      if v ~= false then record[names[j]] = v end
    end
  else -- written under another layout: read what this one knows, by code
    local j = 1
    for code in string.gmatch(a[1], "[^,]+") do
      j = j + 1
      local name = L.by_code[code]
      if name and a[j] ~= false and a[j] ~= nil then record[name] = a[j] end
    end
  end
  return record
end

local function save(key, record, changes, expiry, L)
  local any = false
  for name, value in pairs(changes) do
    record[name] = value
    any = true
  end
  if not any then return end
  local a, names = {L.sig}, L.names
  for j = 1, L.n do
    local v = record[names[j]]
    if v == nil then v = false end
    a[j + 1] = v
  end
  redis.call("SET", key, cmsgpack.pack(a), "PX", expiry)
end

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

-- replies --------------------------------------------------------------------------------
-- outcome, quota, then integers (Redis replies with integers, formatting nothing):
-- retry_after in ms (-1 = unknown or until unlock), lockout started, lockout level, hot,
-- hot alert, heat and expected heat in thousandths, break-glass left, evidence count and
-- limit (-1 = none)
local function milli(value)
  return math.floor(value * 1000 + 0.5)
end

local function reply(outcome, quota, retry, started, level, x)
  return {
    outcome, quota or "", retry and milli(retry) or -1, started and 1 or 0,
    level or 0, x.hot and 1 or 0, x.alert and 1 or 0, milli(x.s or 0), milli(x.e or 0),
    x.bg_left or -1, x.count or -1, x.limit or -1,
  }
end
local NOTHING = {}

-- the portal: quota and cohort heat ------------------------------------------------------
local function portal_step(P, K, flags, now)
  local result = {hot = false}
  if #P.portal > 0 then
    local record = load(K, 4, P.portal_layout)
    local w = overflow(record, P.portal, now)
    if w then
      result.denied = reply("denied", "portal", record[w.ends] - now, false, 0, NOTHING)
      return result
    end
    local changes = {}
    hit(record, P.portal, changes, now)
    save(K[4], record, changes, P.portal_px, P.portal_layout)
  end
  if P.hot and flags.cohort and flags.patient then
    local h = load(K, 6, HEAT)
    local s, l = h.s or 0, h.l or 0
    if h.t then
      local dt = now - h.t
      if dt > 0 then
        s = s * math.exp(-dt / P.hot_window)
        l = l * math.exp(-dt / P.hot_baseline)
      end
    end
    local known = load(K, 5, SEEN).u
    local changes = {}
    local changed = false
    if not known or known <= now then
      s, l = s + 1, l + 1
      changes.s, changes.l, changes.t = s, l, now
      changed = true
      save(K[5], {}, {u = now + P.hot_window}, P.seen_px, SEEN)
    end
    local expected = l * P.hot_window / P.hot_baseline
    result.s, result.e = s, expected
    if s > P.hot * expected + P.hot_min then
      result.hot = true
      if not h.a or h.a <= now then
        result.alert = true
        changes.a = now + P.hot_window
        changed = true
      end
    end
    if changed then save(K[6], h, changes, P.heat_px, HEAT) end
  end
  return result
end

-- the account: lockout, budgets, new patients, break-glass --------------------------------
local function save_account(P, K, record, changes, now)
  local expiry = P.keep_px
  local until_ = changes.lockout or record.lockout
  if until_ and until_ > now and until_ - now + 60 > P.keep then expiry = px(until_ - now + 60) end
  save(K[1], record, changes, expiry, P.account)
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
  if quota == "cohort" or quota == "portal_cohort" or quota == "miss_ratio" then
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

local function account_step(P, K, flags, patient_id, x, now)
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
  local person = {}
  if flags.patient then person = load(K, 2, PATIENT) end
  local granted = (person.g or 0) > now
  local new = flags.patient and not granted and (person.s or 0) <= now
  local walked = {}
  local breach, count, limit = nil, nil, nil
  if new then
    local over, c = overflow(record, P.distinct, now)
    if over then breach, count, limit = "distinct_patients", c, over.amount end
    if not breach and flags.cohort and #P.cohort > 0 then
      walked = load(K, 3, P.walk)
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
      save(K[2], person, {g = now + P.access}, P.patient_px, PATIENT)
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
  if new then
    hit(record, P.distinct, changes, now)
    hit(record, P.new, changes, now)
    if x.hot then hit(record, P.portal_cohort, changes, now) end
    if flags.cohort and #P.cohort > 0 then
      local wchanges = {}
      hit(walked, P.cohort, wchanges, now)
      save(K[3], walked, wchanges, P.walk_px, P.walk)
    end
    save(K[2], person, {s = now + P.seen}, P.patient_px, PATIENT)
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
  return out
end

local FORGOTTEN = {distinct_patients = true, invalid_nirs = true, misses = true,
  portal_cohort = true, new_patients = true, lockout = true, lockout_level = true,
  pending = true, miss_ratio = true}

local function unlock_step(P, K)
  local raw = redis.call("GET", K[1])
  if not raw then return {"unlocked"} end
  local record, kept = load(K, 1, P.account), {}
  for name, value in pairs(record) do
    if not FORGOTTEN[string.match(name, "^[^:]+")] then kept[name] = value end
  end
  local ttl = redis.call("PTTL", K[1])
  if next(kept) == nil or ttl <= 0 then
    redis.call("DEL", K[1])
  else
    save(K[1], {}, kept, tostring(ttl), P.account)
  end
  return {"unlocked"}
end

-- the entry point ------------------------------------------------------------------------
local function main(K, A)
  local mode = A[1]
  local now
  if A[2] ~= "" then
    now = tonumber(A[2])
  else
    local t = redis.call("TIME")
    now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  end
  fetched = {}
  local P = policy_of(A[3], A[8])
  if P == nil then return redis.error_reply("NOPOLICY nirguard: send the policy") end
  local f = A[4]
  local flags = {
    patient = string.sub(f, 1, 1) == "1", cohort = string.sub(f, 2, 2) == "1",
    reason = string.sub(f, 3, 3) == "1", hot = string.sub(f, 4, 4) == "1",
  }
  if mode == "admit" then
    fetch(K, 1, 2, 3, 4, 5, 6)
    local x = portal_step(P, K, flags, now)
    if x.denied then return x.denied end
    return account_step(P, K, flags, A[5], x, now)
  elseif mode == "portal" then
    fetch(K, 4, 5, 6)
    local x = portal_step(P, K, flags, now)
    if x.denied then return x.denied end
    return reply("portal", nil, nil, false, 0, x)
  elseif mode == "account" then
    fetch(K, 1, 2, 3)
    local x = {hot = flags.hot, s = tonumber(A[6]) or 0, e = tonumber(A[7]) or 0}
    return account_step(P, K, flags, A[5], x, now)
  elseif mode == "invalid" then
    return invalid_step(P, K, now)
  elseif mode == "miss" then
    return miss_step(P, K, now)
  elseif mode == "status" then
    return status_step(P, K, flags.hot, now)
  elseif mode == "unlock" then
    return unlock_step(P, K)
  end
  return redis.error_reply("nirguard: unknown mode")
end
