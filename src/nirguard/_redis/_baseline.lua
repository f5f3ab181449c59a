-- nirguard: each account against its own normal, the Redis twin of nirguard/_baseline.py.
--
-- Loaded after _records.lua and before _policy.lua, as one library. The fields live
-- in the account record (codes B*): today's day, new patients, lookups, off-hours
-- new patients; days of history, the EWMA mean and variance of new patients a day,
-- the EWMA share of repeats, a 24-byte hours profile, and the CUSUM. Counts only,
-- never a pseudonym. nirguard/_baseline.py documents the rule; both compute it in
-- the same order, so that both engines agree to the last bit.

local BL_ALPHA = 1 / 21
local BL_SLOTS = 24
local BL_PROFILE_MIN = 60
local BL_USUAL = 0.01
local BL_CV = 0.2
local BL_FIXED = {
  {"bl:d", "Bd"}, {"bl:n", "Bn"}, {"bl:l", "Bl"}, {"bl:o", "Bo"}, {"bl:x", "Bx"}, {"bl:h", "Bh"},
  {"bl:m", "Bm"}, {"bl:v", "Bv"}, {"bl:r", "Br"}, {"bl:p", "Bp"}, {"blc", "Bc"},
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

-- new patients a day expected, and their sd: own EWMAs and the peers' prior, blended
local function bl_expected(s, P)
  local h = s["bl:h"] or 0
  local w = math.min(1, h / P.bl_days)
  local mu = w * (s["bl:m"] or 0) + (1 - w) * P.bl_mean
  local var = w * (s["bl:v"] or 0) + (1 - w) * P.bl_sd * P.bl_sd
  return mu, math.sqrt(math.max(var, mu + BL_CV * BL_CV * mu * mu, 1))
end

-- the fields that change when `day` starts (the day that ended into CUSUM and EWMAs)
local function bl_roll(record, P, day)
  if record["bl:d"] == day then return {} end
  local out = {["bl:d"] = day, ["bl:n"] = 0, ["bl:l"] = 0, ["bl:o"] = 0}
  local lookups = record["bl:l"] or 0
  if lookups <= 0 then return out end
  local n, h = record["bl:n"] or 0, record["bl:h"] or 0
  local mu, sd = bl_expected(record, P)
  local x = n + (P.bl_off - 1) * (record["bl:o"] or 0)
  local top = 2 * P.baseline
  local c = (record.blc or 0) + (x - mu) / sd - P.bl_slack
  if record["bl:x"] and record["bl:x"] ~= 0 then out.blc = top
  else out.blc = math.min(math.max(c, 0), top) end
  out["bl:x"] = 0
  local a = math.max(BL_ALPHA, 1 / (h + 1))
  local m = record["bl:m"] or 0
  local delta = n - m
  local up = math.max(delta, 0) -- the upper semi-variance: quiet days widen nothing
  out["bl:m"] = m + a * delta
  out["bl:v"] = (1 - a) * ((record["bl:v"] or 0) + a * 2 * up * up)
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

local function bl_usual(profile, slot)
  local total = 0
  for i = 1, #profile do total = total + string.byte(profile, i) end
  return total < BL_PROFILE_MIN or string.byte(profile, slot + 1) >= BL_USUAL * total
end

-- whether one more new patient now passes the threshold: its evidence, or nil
local function bl_breach(s, P, slot)
  local mu, sd = bl_expected(s, P)
  local n = (s["bl:n"] or 0) + 1
  local off = s["bl:o"] or 0
  if not bl_usual(s["bl:p"] or "", slot) then off = off + 1 end
  local x = n + (P.bl_off - 1) * off
  local c = s.blc or 0
  if c + math.max(0, (x - mu) / sd - P.bl_slack) <= P.baseline then return nil end
  local limit = mu + (P.baseline + P.bl_slack - c) * sd
  return {n = n, limit = math.max(0, math.floor(limit)), mu = mu, h = s["bl:h"] or 0, off = off}
end

-- count a lookup let through into today and the hours profile
local function bl_count(s, changes, new, slot)
  local profile = s["bl:p"] or ""
  if profile == "" then profile = string.rep("\0", BL_SLOTS) end
  if new and not bl_usual(profile, slot) then changes["bl:o"] = (s["bl:o"] or 0) + 1 end
  local bytes = {string.byte(profile, 1, BL_SLOTS)}
  if bytes[slot + 1] >= 255 then
    for i = 1, BL_SLOTS do bytes[i] = math.floor(bytes[i] / 2) end
  end
  bytes[slot + 1] = bytes[slot + 1] + 1
  changes["bl:p"] = string.char(unpack(bytes))
  changes["bl:l"] = (s["bl:l"] or 0) + 1
  if new then changes["bl:n"] = (s["bl:n"] or 0) + 1 end
end

-- the account's normal for `status` (name/value pairs appended to `out`)
local function bl_summary(record, P, now, out)
  local day = bl_clock(P, now)
  local s = bl_merged(record, bl_roll(record, P, day))
  if (s["bl:h"] or 0) == 0 and (s["bl:l"] or 0) == 0 then return end
  local mu, sd = bl_expected(s, P)
  local values = {s["bl:h"] or 0, s["bl:m"] or 0, mu, sd, s["bl:r"] or 0, s["bl:n"] or 0,
    s.blc or 0}
  out[#out + 1] = "baseline"
  local parts = {}
  for i, v in ipairs(values) do parts[i] = string.format("%.17g", v) end
  out[#out + 1] = table.concat(parts, " ")
end
