-- nirguard: the `sequence` signal, the Redis twin of nirguard/_sequence.py.
--
-- Loaded after _account.lua and before _admit.lua, as one library; _records.lua and
-- _account.lua declare these functions (their locals) before using them.
--
-- A new patient is "next to someone" when one of its two neighbours in its cohort
-- (order number n - 1 and n + 1: the guard sends the 6-byte fingerprints of their patient
-- pseudonyms after the patient's own, ARGV 5) is among the people the cohort's heat
-- counted within `hot_cohort_window` (x.adj, bits: 1 the first, 2 the second), and is
-- not one the account itself looked up within SEQ_TWINS (twins looked up together). The account
-- counts, over the `sequence` windows, its new patients next to someone and its new
-- patients (`sequence_new`); a new patient next to someone past the quota, and at least
-- `sequence_share` of the window's new patients, is a breach. An account that `sequence`
-- locked is remembered for `lockout_memory` (SEQ_HISTORY in its record): its next new
-- patient next to someone breaches at once, with no new quota's worth of evidence.

local SEQ_FP = 6
local SEQ_TWINS = 600 -- seconds: own neighbours looked up closer than this are twins
local SEQ_HISTORY = "sequence:h" -- until when the account is remembered as a walker

-- the neighbours (packed fingerprints) the heat record `raw` counted lately, as bits
seq_near = function(raw, nb, now)
  if not raw or nb == "" then return 0 end
  local seen = heat_of(raw)[5] -- decoded once a call (_records.lua)
  local mask, bit = 0, 1
  for i = 1, #nb - SEQ_FP + 1, SEQ_FP do
    if ends(seen, string.sub(nb, i, i + SEQ_FP - 1)) > now then mask = mask + bit end
    bit = bit * 2
  end
  return mask
end

-- whether a neighbour the portal saw is evidence: somebody else's patient, or the
-- account's own looked up at least SEQ_TWINS ago (r: the account's recent patients, whose
-- entries end P.seen after their lookup)
seq_own = function(adj, r, P, nb, now)
  local bit, latest = 1, now + math.max(0, P.seen - SEQ_TWINS)
  for i = 1, #nb - SEQ_FP + 1, SEQ_FP do
    if adj % (2 * bit) >= bit and ends(r.seen, string.sub(nb, i, i + SEQ_FP - 1)) <= latest then
      return true
    end
    bit = bit * 2
  end
  return false
end

-- new patients next to someone, and new patients, in one window: both share nw's (it
-- starts at the first new patient), so that their ratio means something
local function seq_window(record, sw, nw, now)
  if (record[nw.ends] or 0) > now then return record[sw.field] or 0, record[nw.field] or 0 end
  return 0, 0
end

-- the breach of a new patient next to someone: its count and limit; at once (limit 0) for
-- an account that `sequence` locked within `lockout_memory`
seq_check = function(record, P, adjacent, now)
  if not adjacent then return nil end
  for i = 1, #P.seq do
    local sw = P.seq[i]
    local walked, new = seq_window(record, sw, P.seq_new[i], now)
    if walked + 1 > sw.amount and walked + 1 >= P.seq_share * (new + 1) then
      return "sequence", walked + 1, sw.amount
    end
  end
  if (record[SEQ_HISTORY] or 0) > now then
    return "sequence", seq_window(record, P.seq[1], P.seq_new[1], now) + 1, 0
  end
  return nil
end

-- a lockout by `sequence` (not a question answered with a reason) is remembered
seq_remember = function(changes, P, quota, now)
  if quota == "sequence" then changes[SEQ_HISTORY] = now + P.lockout_memory end
end

-- count a new patient let through (next to someone or not)
seq_count = function(record, changes, P, adjacent, now)
  for i = 1, #P.seq do
    local sw, nw = P.seq[i], P.seq_new[i]
    local walked, new = seq_window(record, sw, nw, now)
    if (record[nw.ends] or 0) <= now then changes[nw.ends] = now + nw.seconds end
    changes[nw.field] = new + 1
    changes[sw.field] = walked + (adjacent and 1 or 0)
  end
end
