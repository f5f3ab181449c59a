-- nirguard: a policy compiled for the library (nirguard/_compiled.py: lua_policy).
--
-- Loaded after _records.lua and before _admit.lua, as one library. A call names its
-- policy by digest; the first call a server cannot place sends the text (ARGV 8),
-- parsed here once and kept (a pure cache: a server that lost it asks again).

local INDEFINITE = 315360000 -- a lockout "until unlock()" (ten years)
local policies = {}          -- compiled policies, by their text (a pure cache)
local policy_count = 0

-- short codes of the quotas, for the layout a record carries
local CODES = {lookups = "l", distinct_patients = "d", invalid_nirs = "i", misses = "m",
  cohort = "c", portal_cohort = "p", new_patients = "n", break_glass = "b", portal = "q",
  strikes = "s", sequence = "x", sequence_new = "y", sequence_ctl = "z"}

local function windows(spec, name, list)
  for amount, seconds in string.gmatch(spec, "(%d+)/(%d+)") do
    list[#list + 1] = {
      amount = tonumber(amount), seconds = tonumber(seconds),
      quota = name, code = CODES[name] .. seconds,
      field = CODES[name] .. seconds, ends = CODES[name] .. seconds .. "e", -- record keys
    }
  end
  return list
end

local ACCOUNT_FIXED = {
  {"lockout", "L"}, {"lockout_level", "V"}, {"lockout_level:e", "Ve"}, {"pending", "P"},
  {"pending:e", "Pe"}, {"pending:q", "Pq"}, {"miss_ratio:n", "Rn"}, {"miss_ratio:n:e", "Rne"},
  {"miss_ratio:m", "Rm"}, {"miss_ratio:m:e", "Rme"}, {"incident", "I"}, {"incident:e", "Ie"},
  {"strikes:p", "Sp"}, -- the patients refused during the lockout (_account.lua: STRUCK)
}
local function longest(group)
  local most = 0
  for _, w in ipairs(group) do if w.seconds > most then most = w.seconds end end
  return most
end

-- the account record's fixed fields under policy P (the signals that are on add theirs)
local function fixed_of(P)
  if not (P.baseline or #P.seq > 0 or P.session) then return ACCOUNT_FIXED end
  local fixed = {}
  for _, pair in ipairs(ACCOUNT_FIXED) do fixed[#fixed + 1] = pair end
  if #P.seq > 0 then fixed[#fixed + 1] = {"sequence:h", "Xh"} end -- _sequence.lua
  if P.session then -- _sessions.lua
    fixed[#fixed + 1] = {"session", "Ss"}
    fixed[#fixed + 1] = {"session:x", "Sx"}
    fixed[#fixed + 1] = {"session:s", "Sz"}
  end
  if P.baseline then
    for _, pair in ipairs(BL_FIXED) do fixed[#fixed + 1] = pair end
  end
  return fixed
end

-- "lookups|distinct|invalid|misses|cohort|portal_cohort|portal|break_glass|seen|
--  lockout steps|lockout_memory|ratio|ratio_min|ratio_window|share|hot|hot_min|
--  hot_window|hot_baseline|hot_action|access|keep|strikes|baseline|slack|prior mean|
--  prior sd|prior days|off-hours weight|offset|sequence|sequence share|volume|
--  session overlap"
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
    strikes = windows(parts[23] or "", "strikes", {}),
    baseline = tonumber(parts[24]),
    bl_slack = tonumber(parts[25]),
    bl_mean = tonumber(parts[26]),
    bl_sd = tonumber(parts[27]),
    bl_days = tonumber(parts[28]),
    bl_off = tonumber(parts[29]),
    bl_offset = tonumber(parts[30]),
    seq = windows(parts[31] or "", "sequence", {}),
    seq_new = windows(parts[31] or "", "sequence_new", {}),
    seq_ctl = windows(parts[31] or "", "sequence_ctl", {}),
    seq_share = tonumber(parts[32]),
    bl_volume = tonumber(parts[33] or ""),
    session = tonumber(parts[34] or ""), -- session_overlap (nil: off; _sessions.lua)
  }
  for step in string.gmatch(parts[10], "([-%d.]+)") do P.lockout[#P.lockout + 1] = tonumber(step) end
  P.account = layout(fixed_of(P),
    {P.lookups, P.distinct, P.invalid, P.misses, P.portal_cohort, P.new, P.break_glass,
     P.strikes, P.seq, P.seq_new, P.seq_ctl})
  P.portal_layout = layout({}, {P.portal})
  P.portal_keep = longest(P.portal) + 60
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
