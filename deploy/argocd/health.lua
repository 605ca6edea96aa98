-- Argo CD health check for resonance.liminal.dev/ResonanceCluster.
-- Install as resource.customizations.health.resonance.liminal.dev_ResonanceCluster in argocd-cm.
-- It reads only the resource's own status, which the operator keeps as a summary of its children:
-- observedGeneration first (a status for an older spec says nothing about the current one), then the
-- Degraded, Progressing and Ready conditions.
local hs = {}

local function condition(name)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == name then
      return c
    end
  end
  return nil
end

local function describe(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  if c ~= nil and c.reason ~= nil and c.reason ~= "" then
    return c.reason
  end
  return fallback
end

local generation = (obj.metadata ~= nil and obj.metadata.generation) or 0
if obj.status == nil or obj.status.observedGeneration == nil or obj.status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local degraded = condition("Degraded")
local progressing = condition("Progressing")
local ready = condition("Ready")

if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(degraded, "Degraded")
  return hs
end

-- A rollout waiting for a manual promotion is suspended, not failing or stuck.
if progressing ~= nil and progressing.status == "True" and progressing.reason == "RolloutPaused" then
  hs.status = "Suspended"
  hs.message = describe(progressing, "Rollout paused")
  return hs
end

if progressing ~= nil and progressing.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(progressing, "Progressing")
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
  return hs
end

hs.status = "Progressing"
hs.message = describe(ready, "Waiting for the cluster to become ready")
return hs
