-- nirguard: a practitioner's walks of birth cohorts (the `cohort` quota), kept in its
-- recent record (_records.lua: load_recent, save_recent).
--
-- Loaded after _records.lua and before _baseline.lua, as one library. Each walk is the
-- cohort's 6-byte fingerprint, then a count (uint32) and an end (double) per window of
-- the cohort quota; the walks are packed in one string, oldest first.

-- walks: per cohort its fingerprint, then for each window of the cohort quota (in the
-- order `wsig` lists their lengths) its count (uint32) and end (double)
-- the group's layout and its windows by length, made once per compiled policy (kept in
-- the group's table)
local function walk_layout(group)
  local wsig = group.wsig
  if not wsig then
    local lengths, by_seconds = {}, {}
    for i, w in ipairs(group) do
      lengths[i] = tostring(w.seconds)
      by_seconds[lengths[i]] = w
    end
    wsig = table.concat(lengths, ",")
    group.wsig, group.by_seconds = wsig, by_seconds
  end
  return wsig
end

local function walk_size(wsig)
  local n = 0
  for _ in string.gmatch(wsig, "[^,]+") do n = n + 1 end
  return 6 + 12 * n
end

-- the latest end a walk entry holds (n windows), read where it lies
local function walk_last(walks, i, n)
  local last = 0
  for j = 0, n - 1 do
    local e = struct.unpack("<d", walks, i + 10 + 12 * j)
    if e > last then last = e end
  end
  return last
end

-- one walk entry as a record of the group's windows (fields and ends by name)
local function decode_walk(r, i, group)
  local out, last = {}, 0
  if r.wsig == walk_layout(group) then -- the group's own layout: its windows in order
    for j, w in ipairs(group) do
      local count, e = struct.unpack("<I4d", r.walks, i + 6 + 12 * (j - 1))
      if e > last then last = e end
      out[w.field], out[w.ends] = count, e
    end
    return out, last
  end
  local j, by_seconds = 0, group.by_seconds
  for seconds in string.gmatch(r.wsig, "[^,]+") do
    local count, e = struct.unpack("<I4d", r.walks, i + 6 + 12 * j)
    j = j + 1
    if e > last then last = e end
    local w = by_seconds[seconds]
    if w then out[w.field], out[w.ends] = count, e end
  end
  return out, last
end

-- the walk of cohort `cfp` (empty once every window it holds has ended)
local function walk_of(r, cfp, group, now)
  if r.wsig == "" then return {} end
  local size, from = walk_size(r.wsig), 1
  while true do
    local i = string.find(r.walks, cfp, from, true)
    if not i then return {} end
    if (i - 1) % size == 0 then
      local walk, last = decode_walk(r, i, group)
      if last <= now then return {} end
      return walk
    end
    from = i + 1
  end
end

local function encode_walk(cfp, walk, group)
  local parts = {cfp}
  for _, w in ipairs(group) do
    parts[#parts + 1] = struct.pack("<I4d", walk[w.field] or 0, walk[w.ends] or 0)
  end
  return table.concat(parts)
end

-- where the entry of `fp` starts in a list of `size`-byte entries, or nil
local function entry_at(list, fp, size)
  local from = 1
  while true do
    local i = string.find(list, fp, from, true)
    if not i then return nil end
    if (i - 1) % size == 0 then return i end
    from = i + 1
  end
end

-- r's walks under the group's layout, cfp's entry last, the dead dropped from the front.
-- Walks already under the group's layout stay as they lie: the front is read until the
-- first live walk, the rest is kept whole but for cfp's entry
local function save_walk(r, cfp, walk, changes, group, now)
  for name, value in pairs(changes) do walk[name] = value end
  local wsig = walk_layout(group)
  local size = walk_size(r.wsig)
  local walks = r.walks
  if wsig == r.wsig then
    local i, n = 1, (size - 6) / 12
    while i + size - 1 <= #walks do
      if string.sub(walks, i, i + 5) ~= cfp and walk_last(walks, i, n) > now then break end
      i = i + size
    end
    walks = string.sub(walks, i)
    local j = entry_at(walks, cfp, size)
    if j then walks = string.sub(walks, 1, j - 1) .. string.sub(walks, j + size) end
  else -- written under another layout: each walk re-encoded under this one
    local kept = {}
    for i = 1, #walks - size + 1, size do
      local fp = string.sub(walks, i, i + 5)
      if fp ~= cfp then
        local old, last = decode_walk(r, i, group)
        kept[#kept + 1] = {encode_walk(fp, old, group), last}
      end
    end
    local first = 1
    while kept[first] and kept[first][2] <= now do first = first + 1 end
    local parts = {}
    for k = first, #kept do parts[#parts + 1] = kept[k][1] end
    walks = table.concat(parts)
  end
  r.wsig, r.walks = wsig, walks .. encode_walk(cfp, walk, group)
  local last = 0
  for _, w in ipairs(group) do
    if (walk[w.ends] or 0) > last then last = walk[w.ends] end
  end
  return last
end
