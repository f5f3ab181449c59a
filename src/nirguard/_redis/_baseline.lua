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
local BL_SO_FAR_MIN = 1 / 3 -- within a day, the least share of it counted as done
-- blx of a day that a reason vouched for: the rest of it breaches past BL_VOUCHED_BAR
-- times baseline, and it rolls in at most at BL_VOUCHED_ROLL times baseline
local BL_VOUCHED, BL_VOUCHED_BAR, BL_VOUCHED_ROLL = -2, 1.5, 0.8
local BL_CLIP = 2 -- a day goes into the EWMAs at most this many sd above its expected
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

-- the share f of a day's mean and its sd (Poisson noise of the part, at least)
local function bl_part(mu, sd, f)
  if f >= 1 then return mu, sd end
  local m = f * mu
  return m, math.sqrt(math.max(f * sd * sd, m + BL_CV * BL_CV * m * m, 1))
end

-- the share of the account's day done by the end of `slot` (its hours profile's lookups
-- in this day's slots so far over all of this day's); 1 while that profile is too thin
local function bl_so_far(s, slot)
  local hours = s["bl:p"] or ""
  local first = slot - slot % 12
  local total, done = 0, 0
  for i = first + 1, math.min(first + 12, #hours) do
    local b = string.byte(hours, i)
    total = total + b
    if i <= slot + 1 then done = done + b end
  end
  if total < BL_PROFILE_MIN then return 1 end
  return math.max(BL_SO_FAR_MIN, done / total)
end

local function bl_score(s, P, n, u, off, f)
  local mu, sd, mu_u, sd_u = bl_expected(s, P)
  mu, sd = bl_part(mu, sd, f or 1)
  mu_u, sd_u = bl_part(mu_u, sd_u, f or 1)
  local x = u + (P.bl_off - 1) * off
  local z = (x - mu_u) / sd_u
  local zn = (n - mu) / sd
  if n < mu + sd then z = math.min(z, zn) end
  if P.bl_volume then z = math.max(z, zn - P.bl_volume) end
  return z
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
  local x = record.blx or 0 -- 1: breached; -1: unlock() forgave it; -2: a reason vouched
  if x == 1 then out.blc = top
  elseif x == -1 then out.blc = 0
  elseif x == BL_VOUCHED then out.blc = math.min(math.max(c, 0), BL_VOUCHED_ROLL * P.baseline)
  else out.blc = math.min(math.max(c, 0), top) end
  local a = math.max(BL_ALPHA, 1 / (h + 1))
  local mu, sd, mu_u, sd_u = bl_expected(record, P)
  local n_in, u_in = math.min(n, mu + BL_CLIP * sd), math.min(u, mu_u + BL_CLIP * sd_u)
  out["bl:m"], out["bl:v"] = bl_ewma(record["bl:m"] or 0, record["bl:v"] or 0, n_in, a)
  out["bl:a"], out["bl:w"] = bl_ewma(record["bl:a"] or 0, record["bl:w"] or 0, u_in, a)
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
  local x = s.blx or 0
  if x == -1 then return nil end -- unlocked today: the rest of the day goes through
  local off, far = bl_unusual(s, P, slot, place)
  local n = (s["bl:n"] or 0) + 1
  local u = (s["bl:u"] or 0) + far
  local o = (s["bl:o"] or 0) + off
  local c = s.blc or 0
  local z = bl_score(s, P, n, u, o, bl_so_far(s, slot))
  local bar = P.baseline
  if x == BL_VOUCHED then -- the reason vouches for the days before too, as the roll will
    bar = BL_VOUCHED_BAR * P.baseline
    c = math.min(c, BL_VOUCHED_ROLL * P.baseline)
  end
  if c + math.max(0, z - P.bl_slack) <= bar then return nil end
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
-- (`vouched`: a reason that the account step grants; the rest of the day goes through)
local function bl_check(record, changes, P, slot, place, x, vouched)
  local b = bl_breach(bl_merged(record, changes), P, slot, place)
  if not b then return nil end
  local was = changes.blx
  if was == nil then was = record.blx or 0 end
  if vouched and was ~= BL_VOUCHED then changes.blx = BL_VOUCHED else changes.blx = 1 end
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
