-- nirguard: the whole decision of one lookup, atomically, on the server.
--
-- This script is the Redis twin of nirguard/_memory.py: both implement the
-- same steps with the same names, and one test suite runs every decision
-- scenario against both. Read them side by side.
--
-- KEYS (all of one practitioner share the hash tag {practitioner}; all
-- portal-wide keys share {%portal}: on a Cluster each group is one slot)
--   1 account  hash: windowed counters, lockout, escalation, pending soft refusal
--   2 patient  hash: s = new-patient window end, g = break-glass grant end
--   3 walk     hash: the practitioner's new patients in this cohort (cohort quota)
--   4 portal   hash: the portal-wide `portal` quota
--   5 pseen    string: end of the window in which this patient is known to the portal
--   6 heat     hash: decayed counts of the cohort's new patients (s, l), t, alert end
--
-- ARGV
--   1 mode: admit (portal then account, one call), portal, account (Cluster:
--     two calls), invalid, miss, status, unlock
--   2 now in seconds, or "" for the server clock (TIME)
--   3.. the compiled policy, then the request (see nirguard/_compiled.py:
--       lua_args and nirguard/_redis.py)
--
-- Counters are fixed windows that start at their first hit (as in `limits`):
-- field "<quota>:<seconds>" holds the count and "<quota>:<seconds>:e" the
-- window's end. Times are stored as seconds (floats as strings). Every key gets
-- an expiry so that nothing outlives its use; expiry is garbage collection
-- only: decisions read the stored ends, so a test clock works as well.
--
-- Reply: a flat array of strings, see nirguard/_redis.py: _decision.

local mode = ARGV[1]
local now
if ARGV[2] ~= "" then
  now = tonumber(ARGV[2])
else
  local t = redis.call("TIME")
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end

-- the policy ------------------------------------------------------------------------------
local function windows(spec, name)
  local list = {}
  for amount, seconds in string.gmatch(spec, "(%d+)/(%d+)") do
    list[#list + 1] = {
      amount = tonumber(amount), seconds = tonumber(seconds),
      field = name .. ":" .. seconds, ends = name .. ":" .. seconds .. ":e",
    }
  end
  return list
end

local P = {
  lookups = windows(ARGV[3], "lookups"),
  distinct = windows(ARGV[4], "distinct_patients"),
  invalid = windows(ARGV[5], "invalid_nirs"),
  misses = windows(ARGV[6], "misses"),
  cohort = windows(ARGV[7], "cohort"),
  portal_cohort = windows(ARGV[8], "portal_cohort"),
  new = windows(ARGV[8], "new_patients"),
  portal = windows(ARGV[9], "portal"),
  break_glass = windows(ARGV[10], "break_glass"),
  seen = tonumber(ARGV[11]),
  lockout = {},
  lockout_memory = tonumber(ARGV[13]),
  ratio = tonumber(ARGV[14]),
  ratio_min = tonumber(ARGV[15]),
  ratio_window = tonumber(ARGV[16]),
  share = tonumber(ARGV[17]),
  hot = tonumber(ARGV[18]),
  hot_min = tonumber(ARGV[19]),
  hot_window = tonumber(ARGV[20]),
  hot_baseline = tonumber(ARGV[21]),
  hot_reason = ARGV[22] == "reason",
  access = tonumber(ARGV[23]),
  keep = tonumber(ARGV[24]),
}
for step in string.gmatch(ARGV[12], "([-%d.]+)") do
  P.lockout[#P.lockout + 1] = tonumber(step)
end
-- the request
local has_patient = ARGV[25] == "1"
local has_cohort = ARGV[26] == "1"
local has_reason = ARGV[27] == "1"
local hot_given = ARGV[28] == "1"

local INDEFINITE = 315360000 -- a lockout "until unlock()" (ten years)
local account, patient, walk, portal, pseen, heat = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]

-- hashes read once, written once ---------------------------------------------------------
local function load(key, fields)
  local values = redis.call("HMGET", key, unpack(fields))
  local record = {}
  for i, name in ipairs(fields) do
    if name == "pending" then
      record[name] = values[i] or nil
    else
      record[name] = tonumber(values[i])
    end
  end
  return record
end

local function fields_of(groups, extra)
  local list = {}
  for _, group in ipairs(groups) do
    for _, w in ipairs(group) do
      list[#list + 1] = w.field
      list[#list + 1] = w.ends
    end
  end
  for _, name in ipairs(extra) do
    list[#list + 1] = name
  end
  return list
end

local function save(key, changes, keep)
  local flat = {}
  for name, value in pairs(changes) do
    flat[#flat + 1] = name
    if type(value) == "string" then
      flat[#flat + 1] = value
    else
      flat[#flat + 1] = string.format("%.17g", value)
    end
  end
  if #flat > 0 then
    redis.call("HSET", key, unpack(flat))
    redis.call("PEXPIRE", key, math.ceil(keep * 1000))
  end
end

-- fixed windows --------------------------------------------------------------------------
local function used(record, w)
  local ends = record[w.ends]
  if ends and ends > now then
    return record[w.field] or 0
  end
  return 0
end

-- the first window that one more hit would overflow, and its count after the hit
local function overflow(record, group, extra)
  for _, w in ipairs(group) do
    local count = used(record, w) + (extra or 1)
    if count > w.amount then
      return w, count
    end
  end
  return nil
end

local function hit(record, group, changes)
  for _, w in ipairs(group) do
    local ends = record[w.ends]
    if ends and ends > now then
      changes[w.field] = (record[w.field] or 0) + 1
    else
      changes[w.field] = 1
      changes[w.ends] = now + w.seconds
    end
  end
end

local function left(record, group)
  local least = nil
  for _, w in ipairs(group) do
    local rest = w.amount - used(record, w)
    if least == nil or rest < least then
      least = rest
    end
  end
  return least
end

-- replies --------------------------------------------------------------------------------
-- outcome, quota, retry_after ("" = unknown or until unlock), lockout started,
-- lockout level, hot, hot alert, heat s, heat expected, break-glass left, evidence count,
-- evidence limit
local function reply(outcome, quota, retry, started, level, extra)
  extra = extra or {}
  return {
    outcome, quota or "",
    retry and string.format("%.3f", retry) or "",
    started and "1" or "0", tostring(level or 0),
    extra.hot and "1" or "0", extra.alert and "1" or "0",
    string.format("%.3f", extra.s or 0), string.format("%.3f", extra.e or 0),
    extra.bg_left and tostring(extra.bg_left) or "",
    extra.count and tostring(extra.count) or "", extra.limit and tostring(extra.limit) or "",
  }
end

-- the portal: quota and cohort heat ------------------------------------------------------
local function portal_step()
  local result = {hot = false}
  if #P.portal > 0 then
    local record = load(portal, fields_of({P.portal}, {}))
    local w = overflow(record, P.portal)
    if w then
      result.denied = reply("denied", "portal", record[w.ends] - now, false, 0)
      return result
    end
    local changes = {}
    hit(record, P.portal, changes)
    local keep = 0
    for _, x in ipairs(P.portal) do keep = math.max(keep, x.seconds) end
    save(portal, changes, keep + 60)
  end
  if P.hot and has_cohort and has_patient then
    local h = load(heat, {"s", "l", "t", "a"})
    local s, l = h.s or 0, h.l or 0
    if h.t then
      local dt = math.max(0, now - h.t)
      s = s * math.exp(-dt / P.hot_window)
      l = l * math.exp(-dt / P.hot_baseline)
    end
    local known = tonumber(redis.call("GET", pseen))
    local changes = {}
    if not known or known <= now then
      s, l = s + 1, l + 1
      changes.s, changes.l, changes.t = s, l, now
      redis.call("SET", pseen, string.format("%.17g", now + P.hot_window),
        "PX", math.ceil(P.hot_window * 1000) + 60000)
    end
    local expected = l * P.hot_window / P.hot_baseline
    result.s, result.e = s, expected
    if s > P.hot * expected + P.hot_min then
      result.hot = true
      if not h.a or h.a <= now then
        result.alert = true
        changes.a = now + P.hot_window
      end
    end
    save(heat, changes, 4 * P.hot_baseline)
  end
  return result
end

-- the account: lockout, budgets, new patients, break-glass --------------------------------
local ACCOUNT_EXTRA = {"lockout", "lockout_level", "lockout_level:e", "pending", "pending:e",
  "miss_ratio:n", "miss_ratio:n:e", "miss_ratio:m", "miss_ratio:m:e"}

-- the account outlives its longest window, and its lockout
local function save_account(record, changes)
  local keep = P.keep
  local until_ = changes.lockout or record.lockout
  if until_ and until_ > now then keep = math.max(keep, until_ - now + 60) end
  save(account, changes, keep)
end

local function lockout_seconds(level)
  local steps = P.lockout
  local step = steps[math.min(level + 1, #steps)]
  if step < 0 then return nil end
  return step
end

local function level_of(record)
  local ends = record["lockout_level:e"]
  if ends and ends > now then return record.lockout_level or 0 end
  return 0
end

local function lock(record, changes, quota, count, limit, extra)
  local level = level_of(record)
  local seconds = lockout_seconds(level)
  changes.lockout = now + (seconds or INDEFINITE)
  changes.lockout_level = level + 1
  changes["lockout_level:e"] = now + P.lockout_memory
  changes["pending:e"] = 0
  save_account(record, changes)
  local outcome = "denied"
  if quota == "cohort" or quota == "portal_cohort" or quota == "miss_ratio" then
    outcome = "suspected"
  end
  extra = extra or {}
  extra.count, extra.limit = count, limit
  return reply(outcome, quota, seconds, true, level + 1, extra)
end

local function locked(record)
  local until_ = record.lockout
  if until_ and until_ > now then
    local retry = until_ - now
    if retry > INDEFINITE / 2 then retry = nil end
    return reply("locked", "locked", retry, false, level_of(record))
  end
  return nil
end

local function ratio_counts(record)
  local n, m = 0, 0
  if (record["miss_ratio:n:e"] or 0) > now then n = record["miss_ratio:n"] or 0 end
  if (record["miss_ratio:m:e"] or 0) > now then m = record["miss_ratio:m"] or 0 end
  return n, m
end

local function bump(record, changes, name, seconds)
  if (record[name .. ":e"] or 0) > now then
    changes[name] = (record[name] or 0) + 1
  else
    changes[name] = 1
    changes[name .. ":e"] = now + seconds
  end
end

local function account_step(hot)
  local groups = {P.lookups, P.distinct, P.misses, P.portal_cohort, P.new, P.break_glass}
  local record = load(account, fields_of(groups, ACCOUNT_EXTRA))
  local extra = {hot = hot.hot, alert = hot.alert, s = hot.s, e = hot.e}
  local changes = {}
  local refused = locked(record)
  if refused then return refused end
  for _, w in ipairs(P.misses) do
    local count = used(record, w)
    if count >= w.amount then
      return lock(record, changes, "misses", count, w.amount, extra)
    end
  end
  if P.ratio then
    local n, m = ratio_counts(record)
    if n >= P.ratio_min and m / n > P.ratio then
      return lock(record, changes, "miss_ratio", m, n, extra)
    end
  end
  local w = overflow(record, P.lookups)
  if w then
    return reply("denied", "lookups", record[w.ends] - now, false, level_of(record), extra)
  end
  local person = {}
  if has_patient then person = load(patient, {"s", "g"}) end
  local granted = (person.g or 0) > now
  local new = has_patient and not granted and (person.s or 0) <= now
  local walked = {}
  local breach, count, limit = nil, nil, nil
  if new then
    local over, c = overflow(record, P.distinct)
    if over then breach, count, limit = "distinct_patients", c, over.amount end
    if not breach and has_cohort and #P.cohort > 0 then
      walked = load(walk, fields_of({P.cohort}, {}))
      over, c = overflow(walked, P.cohort)
      if over then breach, count, limit = "cohort", c, over.amount end
    end
    if not breach and hot.hot then
      for i, pw in ipairs(P.portal_cohort) do
        local hot_new = used(record, pw) + 1
        local all_new = used(record, P.new[i]) + 1
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
      return lock(record, changes, breach, count, limit, extra)
    end
    if has_reason then
      if overflow(record, P.break_glass) then
        if breach == "hot_cohort" then
          return reply("denied", "break_glass", nil, false, level_of(record), extra)
        end
        return lock(record, changes, breach, count, limit, extra)
      end
      hit(record, P.lookups, changes)
      hit(record, P.break_glass, changes)
      if P.ratio then bump(record, changes, "miss_ratio:n", P.ratio_window) end
      save_account(record, changes)
      save(patient, {g = now + P.access}, math.max(P.access, P.seen) + 60)
      extra.bg_left = left(record, P.break_glass) - 1
      extra.count, extra.limit = count, limit
      return reply("break_glass", breach, nil, false, level_of(record), extra)
    end
    if breach ~= "hot_cohort" then
      local pending = record.pending
      local live = (record["pending:e"] or 0) > now
      if live and pending ~= nil and pending ~= ARGV[29] then
        return lock(record, changes, breach, count, limit, extra)
      end
      changes.pending = ARGV[29]
      changes["pending:e"] = now + P.lockout[1]
      save_account(record, changes)
    end
    extra.count, extra.limit = count, limit
    return reply("reason_required", breach, nil, false, level_of(record), extra)
  end
  hit(record, P.lookups, changes)
  if P.ratio then bump(record, changes, "miss_ratio:n", P.ratio_window) end
  if new then
    hit(record, P.distinct, changes)
    hit(record, P.new, changes)
    if hot.hot then hit(record, P.portal_cohort, changes) end
    if has_cohort and #P.cohort > 0 then
      local wchanges = {}
      hit(walked, P.cohort, wchanges)
      local keep = 0
      for _, x in ipairs(P.cohort) do keep = math.max(keep, x.seconds) end
      save(walk, wchanges, keep + 60)
    end
    save(patient, {s = now + P.seen}, math.max(P.seen, P.access) + 60)
  end
  save_account(record, changes)
  return reply("allowed", granted and "break_glass" or nil, nil, false, level_of(record), extra)
end

-- the other calls ------------------------------------------------------------------------
local function invalid_step()
  local record = load(account, fields_of({P.invalid}, ACCOUNT_EXTRA))
  local refused = locked(record)
  if refused then return refused end
  local changes = {}
  local w, count = overflow(record, P.invalid)
  if w then
    return lock(record, changes, "invalid_nirs", count, w.amount)
  end
  hit(record, P.invalid, changes)
  save_account(record, changes)
  return reply("invalid", "invalid_nirs", nil, false, level_of(record))
end

local function miss_step()
  local record = load(account, fields_of({P.misses}, ACCOUNT_EXTRA))
  local changes = {}
  hit(record, P.misses, changes)
  if P.ratio then bump(record, changes, "miss_ratio:m", P.ratio_window) end
  save_account(record, changes)
  return reply("miss", nil, nil, false, level_of(record))
end

local function status_step()
  local groups = {P.lookups, P.distinct, P.invalid, P.misses, P.portal_cohort, P.break_glass}
  local record = load(account, fields_of(groups, ACCOUNT_EXTRA))
  local out = {}
  local names = {"lookups", "distinct_patients", "invalid_nirs", "misses", "portal_cohort", "break_glass"}
  for i, group in ipairs(groups) do
    local rest = left(record, group)
    out[#out + 1] = names[i]
    out[#out + 1] = rest and tostring(math.max(0, rest)) or ""
  end
  if #P.portal > 0 and hot_given then -- status: ARGV 28 says the portal keys were given
    out[#out + 1] = "portal"
    out[#out + 1] = tostring(math.max(0, left(load(portal, fields_of({P.portal}, {})), P.portal)))
  end
  local until_ = record.lockout
  local retry = ""
  if until_ and until_ > now then retry = string.format("%.3f", until_ - now) end
  out[#out + 1] = "locked_for"
  out[#out + 1] = retry
  out[#out + 1] = "level"
  out[#out + 1] = tostring(level_of(record))
  return out
end

local FORGOTTEN = {distinct_patients = true, invalid_nirs = true, misses = true,
  portal_cohort = true, new_patients = true, lockout = true, lockout_level = true,
  pending = true, miss_ratio = true}

local function unlock_step()
  local gone = {}
  for _, name in ipairs(redis.call("HKEYS", account)) do
    local head = string.match(name, "^[^:]+")
    if FORGOTTEN[head] then gone[#gone + 1] = name end
  end
  if #gone > 0 then redis.call("HDEL", account, unpack(gone)) end
  return {"unlocked"}
end

if mode == "admit" then
  local hot = portal_step()
  if hot.denied then return hot.denied end
  return account_step(hot)
elseif mode == "portal" then
  local hot = portal_step()
  if hot.denied then return hot.denied end
  return reply("portal", nil, nil, false, 0, hot)
elseif mode == "account" then
  local extra = {hot = hot_given, s = tonumber(ARGV[30]) or 0, e = tonumber(ARGV[31]) or 0}
  return account_step(extra)
elseif mode == "invalid" then
  return invalid_step()
elseif mode == "miss" then
  return miss_step()
elseif mode == "status" then
  return status_step()
elseif mode == "unlock" then
  return unlock_step()
end
return redis.error_reply("nirguard: unknown mode")
