-- nirguard: the store's records, the Redis twin of nirguard/_memory_records.py.
--
-- Loaded before _admit.lua, as one library: these are the records' formats and
-- the steps that touch nothing but portal-wide records (the portal quota, a
-- cohort's heat). docs/redis.md ("What is stored") gives the layout and the
-- memory each record takes.
--
--   account  one MessagePack map: the fields it holds (windows by short code), "_" its
--            layout's id
--   recent   one MessagePack array: "r1", recent patients, break-glass grants,
--            the walks' layout, the walks, the latest end any of them holds
--   heat     one MessagePack array: s, l, t, a, the patients counted lately
--   portal   like account (the portal quota's windows)
--
-- Patients and cohorts appear in records as 6-byte fingerprints of their
-- pseudonyms (nirguard/_engine.py: fingerprint), in packed lists: 14 bytes an
-- entry, the fingerprint then the end of its window (a little-endian double),
-- oldest first. A list holds one entry per fingerprint; dead entries are
-- dropped from the front whenever the list is written.

local ENTRY = 14
local seq_near, seq_own, seq_check, seq_count, seq_remember -- _sequence.lua
local ses_check, ses_see, ses_mark -- _sessions.lua
local SHIFT = nil -- simulated time: expiries shifted onto the server's clock (ARGV 8)

-- SET's expiry for a record that holds nothing a decision reads after `at`
local function expiry(at, now)
  if SHIFT then return "PXAT", string.format("%d", math.ceil((at + SHIFT) * 1000)) end
  return "PX", string.format("%d", math.max(1, math.ceil((at - now) * 1000)))
end

local function set_shift(value)
  SHIFT = tonumber(value)
end

-- packed lists --------------------------------------------------------------------------
local function position(list, fp)
  local from = 1
  while true do
    local i = string.find(list, fp, from, true)
    if not i then return nil end
    if (i - 1) % ENTRY == 0 then return i end
    from = i + 1
  end
end

-- the end of fp's window in `list`, or 0
local function ends(list, fp)
  local i = position(list, fp)
  if not i then return 0 end
  return (struct.unpack("<d", list, i + 6))
end

local function prune(list, now)
  local start, n = 1, #list
  while start + ENTRY - 1 <= n and struct.unpack("<d", list, start + 6) <= now do
    start = start + ENTRY
  end
  if start > 1 then return string.sub(list, start) end
  return list
end

-- `list` with fp's entry ending at `e` (moved to the back), the dead dropped
local function add(list, fp, e, now)
  local i = position(list, fp)
  if i then list = string.sub(list, 1, i - 1) .. string.sub(list, i + ENTRY) end
  return prune(list .. fp .. struct.pack("<d", e), now)
end

-- recent: a practitioner's patients, grants and cohort walks -----------------------------
local function load_recent(raw)
  if not raw then return {seen = "", grants = "", wsig = "", walks = "", latest = 0} end
  local a = cmsgpack.unpack(raw)
  return {seen = a[2], grants = a[3], wsig = a[4], walks = a[5], latest = a[6]}
end

local function save_recent(key, r, at, now)
  if at > r.latest then r.latest = at end
  local packed = cmsgpack.pack({"r1", r.seen, r.grants, r.wsig, r.walks, r.latest})
  local how, when = expiry(r.latest + 60, now)
  redis.call("SET", key, packed, how, when)
end

-- heat: one cohort's decayed counts -------------------------------------------------------
-- a heat record decoded: {s, l, t, a, seen}. The last one is kept (by its text: the same
-- text decodes the same), so a call that reads it twice (`sequence`'s neighbours, then the
-- heat step) decodes it once; nobody changes the table it returns
local heat_raw, heat_decoded = nil, nil
local function heat_of(raw)
  if raw ~= heat_raw then heat_raw, heat_decoded = raw, cmsgpack.unpack(raw) end
  return heat_decoded
end

-- when a cohort's record is forgotten: its baseline decayed to one patient, and at
-- least a heat window after its last new patient, and its alert window over
local function forgotten(P, t, l, a)
  local e = t + P.hot_window
  if l > 1 then e = t + math.max(P.hot_window, P.hot_baseline * math.log(l)) end
  return math.max(e, a)
end

-- count a patient new to the practitioner in its cohort's heat (once per heat window,
-- portal-wide); x gets s, e (heat and expected heat), hot and alert
local function heat_step(P, key, raw, fp, x, now)
  local s, l, t, a, seen = 0, 0, nil, 0, ""
  if raw then
    local h = heat_of(raw)
    s, l, t, a, seen = h[1], h[2], h[3], h[4], h[5]
    if now > forgotten(P, t, l, a) then s, l, t, a, seen = 0, 0, nil, 0, "" end
  end
  local ds, dl = s, l
  if t then
    local dt = now - t
    if dt > 0 then
      ds = s * math.exp(-dt / P.hot_window)
      dl = l * math.exp(-dt / P.hot_baseline)
    end
  end
  local changed = false
  local seen_end = ends(seen, fp)
  if seen_end <= now then
    ds, dl = ds + 1, dl + 1
    s, l, t = ds, dl, now
    seen = add(seen, fp, now + P.hot_window, now)
    changed = true
  end
  local expected = dl * P.hot_window / P.hot_baseline
  x.s, x.e = ds, expected
  if not x.cold and ds > P.hot * expected + P.hot_min then -- cold: warming up, never hot
    x.hot = true
    if a <= now then
      x.alert = true
      a = now + P.hot_window
      changed = true
    end
  end
  if changed then
    local how, when = expiry(forgotten(P, t, l, a) + 60, now)
    redis.call("SET", key, cmsgpack.pack({s, l, t, a, seen}), how, when)
  end
end

-- account and portal records ------------------------------------------------------------
-- A record is one MessagePack map of the fields it holds (an absent field is not stored):
-- a window's count and end under its short code ("l60", "l60e"), the other fields under
-- their names, and "_" the layout's id (a digest of its codes). Unpacked, the map is the
-- record: nothing is copied or renamed on a read, and nothing absent is packed on a write.
-- A record written under another layout (the policy changed) keeps what this one knows:
-- the windows the two share (same code) and the named fields. A record in the format
-- before (one array: its layout's codes, then the values in that order, false = absent)
-- is read by its codes and written back as a map.
local function layout(fixed, groups)
  local names, codes, by_code, known, quota = {}, {}, {}, {}, {}
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
      quota[w.field], quota[w.ends] = w.quota, w.quota
    end
  end
  for i = 1, #names do by_code[codes[i]], known[names[i]] = names[i], true end
  local sig = table.concat(codes, ",")
  return {sig = sig, id = string.sub(redis.sha1hex(sig), 1, 8), by_code = by_code,
    known = known, quota = quota}
end

-- read once (one MGET for a step's keys), written once
local fetched = {}

local function fetch(K, ...)
  local which = {...}
  local keys = {}
  for i = 1, #which do keys[i] = K[which[i]] end
  local values = redis.call("MGET", unpack(keys))
  fetched = {}
  for i = 1, #which do fetched[which[i]] = values[i] end
end

local function raw_of(K, i)
  local raw = fetched[i]
  if raw == nil then raw = redis.call("GET", K[i]) end
  return raw
end

-- a stored record as this layout reads it
local function decode(raw, L)
  local r = cmsgpack.unpack(raw)
  if r._ == L.id then
    r._ = nil
    return r
  end
  local record = {}
  if r[1] ~= nil then -- the format before: an array led by its layout's codes
    local j = 1
    for code in string.gmatch(r[1], "[^,]+") do
      j = j + 1
      local name = L.by_code[code]
      if name and r[j] ~= false and r[j] ~= nil then record[name] = r[j] end
    end
  else -- written under another layout: what this one knows
    local known = L.known
    for name, v in pairs(r) do
      if known[name] then record[name] = v end
    end
  end
  return record
end

local function load(K, i, L)
  local raw = raw_of(K, i)
  if not raw then return {} end
  return decode(raw, L)
end

-- one field of record K[i] (a name shorter than 32 bytes). A map (first byte 0x8_, or
-- 0xde) holds the field only if it holds its key, a fixstr: without it, nothing is decoded
local function field(K, i, L, name)
  local raw = raw_of(K, i)
  if not raw then return nil end
  local b = string.byte(raw, 1)
  if (b == 0xde or (b >= 0x80 and b <= 0x8f))
      and not string.find(raw, string.char(0xa0 + #name) .. name, 1, true) then
    return nil
  end
  return decode(raw, L)[name]
end

-- `record` with its changes (a name this layout does not know is not stored), written
local function save(key, record, changes, at, now, L)
  local any, known = false, L.known
  for name, value in pairs(changes) do
    if known[name] then record[name] = value end
    any = true
  end
  if not any then return end
  record._ = L.id
  local packed = cmsgpack.pack(record)
  record._ = nil
  local how, when = expiry(at, now)
  redis.call("SET", key, packed, how, when)
end

-- replies --------------------------------------------------------------------------------
-- outcome, quota, then integers (Redis replies with integers, formatting nothing):
-- retry_after in ms (-1 = unknown or until unlock), lockout started, lockout level, hot,
-- hot alert, heat and expected heat in thousandths, break-glass left, evidence count and
-- limit (-1 = none), the start of the account's open incident in ms (-1 = none), whether
-- this decision opened it, the baseline's expected day in thousandths, its days of history
-- (-1 = no baseline evidence) and off-hours new patients, then the neighbours the heat saw;
-- then, only when the patient's heat is still to be counted (heat flag "4": a new patient
-- of an account not locked), 1
local function milli(value)
  return math.floor(value * 1000 + 0.5)
end

local function reply(outcome, quota, retry, started, level, x)
  local out = {
    outcome, quota or "", retry and milli(retry) or -1, started and 1 or 0,
    level or 0, x.hot and 1 or 0, x.alert and 1 or 0, milli(x.s or 0), milli(x.e or 0),
    x.bg_left or -1, x.count or -1, x.limit or -1,
    x.incident and milli(x.incident) or -1, x.opens and 1 or 0, milli(x.bl_mu or 0),
    x.bl_h or -1, x.bl_off or 0, x.adj or 0,
  }
  if x.want then out[19] = 1 end
  return out
end
local NOTHING = {}

-- a patient new to the practitioner, or not ------------------------------------------------
-- the practitioner's recent patients, whether a grant opens the patient, whether it
-- is new to the practitioner; for a new patient, the cohort's heat first (evidence
-- about the cohort, whatever the account decides), or on a Cluster the reply "heat"
-- (the heat decides; the patient's facts come with it), or the mark that the heat is to
-- be counted (it decides nothing)
local function patient_step(P, K, flags, patient_id, x, now)
  local r = load_recent(raw_of(K, 2))
  local granted = flags.patient and ends(r.grants, patient_id) > now
  local new = flags.patient and not granted and ends(r.seen, patient_id) <= now
  local seen = {r = r, granted = granted, new = new}
  if new and flags.heat == "2" then
    return seen, {"heat"}
  elseif new and flags.heat == "4" then
    x.want = true
  elseif new and flags.heat == "1" then
    local raw = raw_of(K, 3)
    if #P.seq > 0 then x.adj = seq_near(raw, flags.nb, now) end
    heat_step(P, K[3], raw, patient_id, x, now)
  elseif not new then
    x.hot, x.s, x.e = false, 0, 0 -- a repeat: nothing portal-wide applies
  end
  return seen
end
