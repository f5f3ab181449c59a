-- nirguard: the `sequence` signal, the Redis twin of nirguard/_sequence.py.
--
-- Loaded after _account.lua and before _admit.lua, as one library; _records.lua and
-- _account.lua declare these functions (their locals) before using them.
--
-- The guard sends, after the patient's fingerprint (ARGV 5), the 6-byte fingerprints of
-- the patient pseudonyms of four numbers of its cohort: its neighbours (order n - 1,
-- n + 1) and its controls (n - d, n + d, d keyed by the patient; six zero bytes for a
-- number outside 001-999). The heat step says which of them the cohort's heat counted
-- within `hot_cohort_window` (x.adj, bits 1, 2: neighbours; 4, 8: controls); one is
-- evidence unless the account itself looked it up within SEQ_TWINS (twins looked up
-- together). The account counts, over the `sequence` windows, its new patients with a
-- neighbour only as evidence, those with a control only, and its new patients
-- (`sequence_new`). A new patient with a neighbour only breaches when the excess of the
-- first count over the second passes the quota, the sign test (excess^2 >= SEQ_Z2 times
-- their sum) and `sequence_share` of the window's new patients. An account that
-- `sequence` locked is remembered for `lockout_memory` (SEQ_HISTORY in its record): its
-- next new patient with a neighbour only breaches at once.

local SEQ_FP = 6
local SEQ_TWINS = 600 -- seconds: own neighbours looked up closer than this are twins
local SEQ_HISTORY = "sequence:h" -- until when the account is remembered as a walker
local SEQ_Z2 = 16 -- the sign test's z (4), squared
local SEQ_NEIGHBOUR, SEQ_CONTROL = 1, 2 -- seq_own's answer: bits

-- the probes (packed fingerprints) the heat record `raw` counted lately, as bits
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

-- which probes the portal saw are evidence: somebody else's patient, or the account's own
-- looked up at least SEQ_TWINS ago (r: the account's recent patients, whose entries end
-- P.seen after their lookup); SEQ_NEIGHBOUR when a neighbour is, plus SEQ_CONTROL when
-- a control is
seq_own = function(adj, r, P, nb, now)
  if adj == 0 then return 0 end
  local bit, latest, found = 1, now + math.max(0, P.seen - SEQ_TWINS), 0
  for i = 1, #nb - SEQ_FP + 1, SEQ_FP do
    if adj % (2 * bit) >= bit and ends(r.seen, string.sub(nb, i, i + SEQ_FP - 1)) <= latest then
      local kind = i <= 2 * SEQ_FP and SEQ_NEIGHBOUR or SEQ_CONTROL
      if found % (2 * kind) < kind then found = found + kind end
    end
    bit = bit * 2
  end
  return found
end

-- new patients with a neighbour only, with a control only, and new patients, in window
-- i: the three share seq_new's window (it starts at the first new patient)
local function seq_window(record, P, i, now)
  local nw = P.seq_new[i]
  if (record[nw.ends] or 0) > now then
    return record[P.seq[i].field] or 0, record[P.seq_ctl[i].field] or 0, record[nw.field] or 0
  end
  return 0, 0, 0
end

-- the breach of a new patient with a neighbour only: its count (neighbour only) and limit
-- (control only); at once for an account that `sequence` locked within `lockout_memory`
seq_check = function(record, P, found, now)
  if found ~= SEQ_NEIGHBOUR then return nil end
  for i = 1, #P.seq do
    local nb, ctl, new = seq_window(record, P, i, now)
    local excess = nb + 1 - ctl
    if excess > P.seq[i].amount and excess * excess >= SEQ_Z2 * (nb + 1 + ctl)
        and excess >= P.seq_share * (new + 1) then
      return "sequence", nb + 1, ctl
    end
  end
  if (record[SEQ_HISTORY] or 0) > now then
    local nb, ctl = seq_window(record, P, 1, now)
    return "sequence", nb + 1, ctl
  end
  return nil
end

-- a lockout by `sequence` (not a question answered with a reason) is remembered
seq_remember = function(changes, P, quota, now)
  if quota == "sequence" then changes[SEQ_HISTORY] = now + P.lockout_memory end
end

-- count a new patient let through: with a neighbour only, a control only, or neither
seq_count = function(record, changes, P, found, now)
  for i = 1, #P.seq do
    local nw = P.seq_new[i]
    local nb, ctl, new = seq_window(record, P, i, now)
    if (record[nw.ends] or 0) <= now then changes[nw.ends] = now + nw.seconds end
    changes[nw.field] = new + 1
    changes[P.seq[i].field] = nb + (found == SEQ_NEIGHBOUR and 1 or 0)
    changes[P.seq_ctl[i].field] = ctl + (found == SEQ_CONTROL and 1 or 0)
  end
end
