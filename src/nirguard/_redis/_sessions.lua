-- nirguard: the `session_overlap` signal, the Redis twin of nirguard/_sessions.py.
--
-- Loaded after _account.lua and before _admit.lua, as one library; _records.lua declares
-- these functions (its locals) before _account.lua uses them.
--
-- One account, one session at a time. The account's record keeps, in SES_LIST, the
-- sessions that used it within SES_MEMORY (or `session_overlap`, when longer): 14 bytes
-- each, the session's 6-byte fingerprint then the time of its last lookup let through (a
-- little-endian double), oldest use first, at most SES_KEPT. A session is active for
-- `session_overlap` after its last lookup. A lookup from session s is a return when s used
-- the account before and the session that used it since is still active, a third session
-- when s is new while two others are active; either is the signal `session` for a new
-- patient, and for a repeat marks the account (SES_MARK, for `session_overlap`): its next
-- new patient is refused. A lookup let through moves its session to the end.

local SES_LIST, SES_MARK, SES_SPARED = "session", "session:x", "session:s"
local SES_ENTRY, SES_KEPT, SES_MEMORY = 14, 4, 86400

-- the sessions of `packed` used within the memory: a list of {fingerprint, last use}
local function ses_recent(packed, P, now)
  local since = now - math.max(SES_MEMORY, P.session)
  local out = {}
  for i = 1, #packed - SES_ENTRY + 1, SES_ENTRY do
    local used = struct.unpack("<d", packed, i + 6)
    if used > since then out[#out + 1] = {string.sub(packed, i, i + 5), used} end
  end
  return out
end

-- the `session` breach of a new patient from `fp` (a return, a third session, or a mark
-- left by a repeat): "session", the sessions at once, 1; for a repeat nil, marking the
-- account in `changes` when it was a return or a third session
ses_check = function(record, changes, P, fp, new, now)
  if fp == "" or not P.session then return nil end
  local sessions = ses_recent(record[SES_LIST] or "", P, now)
  local n, active, seen = #sessions, now - P.session, 0
  if n > 0 and sessions[n][1] ~= fp then
    local others, mine = 0, false
    for i = 1, n do
      if sessions[i][1] == fp then
        mine = true
      elseif sessions[i][2] > active then
        others = others + 1
      end
    end
    if mine then
      if sessions[n][2] > active then seen = others + 1 end -- a return
    elseif others >= 2 then
      seen = others + 1 -- a third session
    end
  end
  if not new then
    if seen > 0 then ses_mark(changes, P, "", now) end
    return nil
  end
  if seen > 0 then return "session", seen, 1 end
  if (record[SES_MARK] or 0) > now and (record[SES_SPARED] or "") ~= fp then
    return "session", 2, 1
  end
  return nil
end

-- refuse the account's next new patient within the window, from any session but `spared`
-- (a signal spares the refused session: a reason answers one question, not the window's)
ses_mark = function(changes, P, spared, now)
  changes[SES_MARK] = now + P.session
  changes[SES_SPARED] = spared
end

-- a lookup from `fp` let through: it is the session that used the account last; sessions
-- unused for the memory and the oldest beyond SES_KEPT are dropped
ses_see = function(record, changes, P, fp, now)
  if fp == "" or not P.session then return end
  local kept = {}
  for _, s in ipairs(ses_recent(record[SES_LIST] or "", P, now)) do
    if s[1] ~= fp then kept[#kept + 1] = s[1] .. struct.pack("<d", s[2]) end
  end
  kept[#kept + 1] = fp .. struct.pack("<d", now)
  local first = math.max(1, #kept - SES_KEPT + 1)
  changes[SES_LIST] = table.concat(kept, "", first, #kept)
end
