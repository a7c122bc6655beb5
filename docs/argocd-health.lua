-- Argo CD custom health check for nftegress.io/EgressPolicy.
--
-- Install it in the argocd-cm ConfigMap (see the README, "Argo CD"):
--   resource.customizations.health.nftegress.io_EgressPolicy: |
--     <this file>
--
-- The controller writes kstatus conditions (Ready, Stalled, Reconciling) and
-- status.observedGeneration. Stalled comes first, as for kstatus: a policy that failed on one
-- node is Degraded even while other nodes are still applying it.
--   Progressing  no status yet, status.observedGeneration < metadata.generation, or
--                Reconciling=True (selected nodes have not applied this generation yet)
--   Degraded     Stalled=True (a node failed to apply it, or it names an unknown address set)
--   Healthy      Ready=True (every selected node applied it; the message says when the
--                policy selects no node or some nodes are suspended)
-- Written for Argo CD's Lua 5.1 (gopher-lua): numbers are floats, no integer division.

local function condition(status, kind)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function text(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  if c ~= nil and c.reason ~= nil and c.reason ~= "" then
    return c.reason
  end
  return fallback
end

local hs = {}
local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the nftegress controller to report a status"
  return hs
end

local generation = obj.metadata.generation
local observed = status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = string.format("Waiting for the nftegress controller to observe generation %d", generation)
  return hs
end

local stalled = condition(status, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = text(stalled, "Stalled")
  return hs
end

local reconciling = condition(status, "Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = text(reconciling, "Reconciling")
  return hs
end

local ready = condition(status, "Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = text(ready, "Ready")
  return hs
end

hs.status = "Progressing"
hs.message = text(ready, "Waiting for the Ready condition")
return hs
