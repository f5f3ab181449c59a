-- nirguard: each account against its own normal, the Redis twin of nirguard/_baseline.py.
--
-- Loaded after _records.lua and before _policy.lua, as one library. The fields live
-- in the account record (codes B*): today's day, new patients, of them from unusual
-- places and at unusual hours, lookups, whether the day breached; days of history,
-- EWMA mean and upper semi-variance of new patients a day and of those from unusual
-- places, the EWMA share of repeats, an hours profile (24 bytes), a places profile
-- (64 bytes) and the CUSUM. Counts only, never a pseudonym. nirguard/_baseline.py
-- documents the rule; both compute it in the same order, to the last bit.

local BL_ALPHA = 1 / 21
local BL_SLOTS = 24
local BL_PLACES = 64
local BL_PROFILE_MIN = 60
local BL_USUAL_HOURS = 0.01
local BL_USUAL_PLACE = 0.04
local BL_CV = 0.2
local BL_NIGHT = {[11] = true, [0] = true, [1] = true, [2] = true} -- 22:00-06:00 local
local BL_FIXED = {
  {"bl:d", "Bd"}, {"bl:n", "Bn"}, {"bl:u", "Bu"}, {"bl:o", "Bo"}, {"bl:l", "Bl"},
  {"blx", "Bx"}, {"bl:h", "Bh"}, {"bl:m", "Bm"}, {"bl:v", "Bv"}, {"bl:a", "Ba"},
  {"bl:w", "Bw"}, {"bl:r", "Br"}, {"bl:p", "Bp"}, {"bl:q", "Bq"}, {"blc", "Bc"},
}

-- the local day number and the hours slot (0-11 weekdays, 12-23 weekends)
local function bl_clock(P, now)
  local t = now + P.bl_offset
  local day = math.floor(t / 86400)
  local hour = math.floor((t - day * 86400) / 3600)
  local weekend = 0
  if (day + 3) % 7 >= 5 then weekend = 12 end -- day 0 (1970-01-01) was a Thursday
  return day, math.floor(math.min(hour, 23) / 2) + weekend
end

local function bl_blend(own, var, h, P)
  local w = math.min(1, h / P.bl_days)
  local mu = w * own + (1 - w) * P.bl_mean
  local v = w * var + (1 - w) * P.bl_sd * P.bl_sd
  return mu, math.sqrt(math.max(v, mu + BL_CV * BL_CV * mu * mu, 1))
end

-- new patients a day expected and their sd, then those of new patients from unusual places
local function bl_expected(s, P)
  local h = s["bl:h"] or 0
  local mu, sd = bl_blend(s["bl:m"] or 0, s["bl:v"] or 0, h, P)
  local mu_u, sd_u = bl_blend(s["bl:a"] or 0, s["bl:w"] or 0, h, P)
  return mu, sd, mu_u, sd_u
end

local function bl_score(s, P, n, u, off)
  local mu, sd, mu_u, sd_u = bl_expected(s, P)
  local x = u + (P.bl_off - 1) * off
  local z = (x - mu_u) / sd_u
  if n >= mu + sd then return z end
  return math.min(z, (n - mu) / sd)
end

local function bl_ewma(m, v, x, a)
  local delta = x - m
  local up = math.max(delta, 0) -- the upper semi-variance: quiet days widen nothing
  return m + a * delta, (1 - a) * (v + a * 2 * up * up)
end

-- the fields that change when `day` starts (the day that ended into CUSUM and EWMAs)
local function bl_roll(record, P, day)
  if record["bl:d"] == day then return {} end
  local out = {["bl:d"] = day, ["bl:n"] = 0, ["bl:u"] = 0, ["bl:o"] = 0, ["bl:l"] = 0,
    ["blx"] = 0}
  local lookups = record["bl:l"] or 0
  if lookups <= 0 then return out end
  local n, u, h = record["bl:n"] or 0, record["bl:u"] or 0, record["bl:h"] or 0
  local top = 2 * P.baseline
  local c = (record.blc or 0) + bl_score(record, P, n, u, record["bl:o"] or 0)
  c = c - P.bl_slack
  local x = record.blx or 0 -- 1: the day breached; -1: unlock() forgave it
  if x == 1 then out.blc = top
  elseif x == -1 then out.blc = 0
  else out.blc = math.min(math.max(c, 0), top) end
  local a = math.max(BL_ALPHA, 1 / (h + 1))
  out["bl:m"], out["bl:v"] = bl_ewma(record["bl:m"] or 0, record["bl:v"] or 0, n, a)
  out["bl:a"], out["bl:w"] = bl_ewma(record["bl:a"] or 0, record["bl:w"] or 0, u, a)
  local r = record["bl:r"] or 0
  out["bl:r"] = r + a * ((lookups - n) / lookups - r)
  out["bl:h"] = math.min(h + 1, 10000)
  return out
end

local function bl_merged(record, changes)
  local s = {}
  for k, v in pairs(record) do s[k] = v end
  for k, v in pairs(changes) do s[k] = v end
  return s
end

local function bl_total(profile)
  local total = 0
  for i = 1, #profile do total = total + string.byte(profile, i) end
  return total
end

local function bl_usual(profile, at, share)
  if at < 0 or at >= #profile then return false end
  local total = bl_total(profile)
  return total >= BL_PROFILE_MIN and string.byte(profile, at + 1) >= share * total
end

-- whether a new patient now is off-hours, and from an unusual place (0 or 1 each); until
-- the account has `baseline_prior_days` days of its own, no practice works at night
local function bl_unusual(s, P, slot, place)
  local hours = s["bl:p"] or ""
  local off, far = 1, 1
  if bl_total(hours) < BL_PROFILE_MIN or bl_usual(hours, slot, BL_USUAL_HOURS) then off = 0 end
  if (s["bl:h"] or 0) < P.bl_days and BL_NIGHT[slot % 12] then off = 1 end
  if bl_usual(s["bl:q"] or "", place, BL_USUAL_PLACE) then far = 0 end
  return off, far
end

-- whether one more new patient now passes the threshold: its evidence, or nil
local function bl_breach(s, P, slot, place)
  if (s.blx or 0) == -1 then return nil end -- unlocked today: the rest of the day goes through
  local off, far = bl_unusual(s, P, slot, place)
  local n = (s["bl:n"] or 0) + 1
  local u = (s["bl:u"] or 0) + far
  local o = (s["bl:o"] or 0) + off
  local c = s.blc or 0
  if c + math.max(0, bl_score(s, P, n, u, o) - P.bl_slack) <= P.baseline then return nil end
  local _, _, mu_u = bl_expected(s, P)
  return {n = n, u = u, mu = mu_u, h = s["bl:h"] or 0, off = o}
end

local function bl_counted(profile, size, at)
  if profile == "" then profile = string.rep("\0", size) end
  if at < 0 or at >= size then return profile end
  local bytes = {string.byte(profile, 1, size)}
  if bytes[at + 1] >= 255 then
    for i = 1, size do bytes[i] = math.floor(bytes[i] / 2) end
  end
  bytes[at + 1] = bytes[at + 1] + 1
  return string.char(unpack(bytes))
end

-- roll the account's day into `changes` when one started; the hours slot of `now`
local function bl_open_day(record, changes, P, now)
  if not P.baseline then return 0 end
  local day, slot = bl_clock(P, now)
  for name, value in pairs(bl_roll(record, P, day)) do changes[name] = value end
  return slot
end

-- the account step's check of a new patient: "baseline", new patients today, of them
-- from unusual places (the rest of the evidence into x), or nil; a breach marks the day
local function bl_check(record, changes, P, slot, place, x)
  local b = bl_breach(bl_merged(record, changes), P, slot, place)
  if not b then return nil end
  changes.blx = 1
  x.bl_mu, x.bl_h, x.bl_off = b.mu, b.h, b.off
  return "baseline", b.n, b.u
end

-- count a lookup let through into today and the profiles
local function bl_count(s, P, changes, new, slot, place)
  if new then
    local off, far = bl_unusual(s, P, slot, place)
    changes["bl:n"] = (s["bl:n"] or 0) + 1
    changes["bl:u"] = (s["bl:u"] or 0) + far
    changes["bl:o"] = (s["bl:o"] or 0) + off
  end
  changes["bl:p"] = bl_counted(s["bl:p"] or "", BL_SLOTS, slot)
  changes["bl:q"] = bl_counted(s["bl:q"] or "", BL_PLACES, place)
  changes["bl:l"] = (s["bl:l"] or 0) + 1
end

-- the account's normal for `status` (name/value pairs appended to `out`)
local function bl_summary(record, P, now, out)
  local day = bl_clock(P, now)
  local s = bl_merged(record, bl_roll(record, P, day))
  if (s["bl:h"] or 0) == 0 and (s["bl:l"] or 0) == 0 then return end
  local mu, sd, mu_u = bl_expected(s, P)
  local values = {s["bl:h"] or 0, s["bl:m"] or 0, mu, sd, mu_u, s["bl:r"] or 0,
    s["bl:n"] or 0, s["bl:u"] or 0, s.blc or 0}
  local parts = {}
  for i, v in ipairs(values) do parts[i] = string.format("%.17g", v) end
  out[#out + 1] = "baseline"
  out[#out + 1] = table.concat(parts, " ")
end
