-- Argo CD resource actions for resonance.liminal.dev/ResonanceCluster: which of promote, promote-full,
-- abort and retry apply now. Each action only sets the annotation resonance.liminal.dev/rollout-action,
-- which the operator reads, acts on once and removes (docs/rollouts.md), exactly as
-- `kubectl resonance promote|abort|retry` does. Reads status.rollout (strategy, phase, analysis).
local actions = {}
local rollout = (obj.status ~= nil and obj.status.rollout) or {}
local strategy = rollout.strategy or "rolling"
local phase = rollout.phase or ""
local annotations = (obj.metadata ~= nil and obj.metadata.annotations) or {}
local pending = annotations["resonance.liminal.dev/rollout-action"] ~= nil

local stepwise = strategy == "canary" or strategy == "blueGreen"
local in_flight = stepwise and (phase == "CanaryStepProgressing" or phase == "PreviewProgressing"
  or phase == "RolloutPaused")
local inconclusive = phase == "RolloutPaused" and rollout.analysis ~= nil
  and (rollout.analysis.inconclusive or 0) > 0
local retryable = stepwise and (phase == "RolledBack" or inconclusive)

-- A request the operator has not handled yet waits in the annotation: offer nothing until it is gone.
actions["promote"] = {["disabled"] = pending or not in_flight, ["displayName"] = "Promote (finish this step)"}
actions["promote-full"] = {["disabled"] = pending or not in_flight or strategy ~= "canary",
  ["displayName"] = "Promote fully (skip every step)"}
actions["abort"] = {["disabled"] = pending or not in_flight, ["displayName"] = "Abort (roll back, drain the canary)"}
actions["retry"] = {["disabled"] = pending or not retryable, ["displayName"] = "Retry (from step 1, or rerun the analysis)"}
return actions
