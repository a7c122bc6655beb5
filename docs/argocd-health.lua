-- Argo CD custom health check for nftegress.io/EgressPolicy.
--
-- Install it in the argocd-cm ConfigMap (see the README, "Argo CD"):
--   resource.customizations.health.nftegress.io_EgressPolicy: |
--     <this file>
--
-- The controller writes kstatus conditions (Ready, Stalled, Reconciling) and
-- status.observedGeneration. Stalled comes first, as for kstatus: a policy that failed on one
-- node is Degraded even while other nodes are still applying it.
--   Progressing  no status yet (the API server defaults status.observedGeneration to 0),
--                status.observedGeneration < metadata.generation, or Reconciling=True
--                (selected nodes have not applied this generation yet)
--   Degraded     Stalled=True (a node failed to apply it, or it names an unknown address set)
--   Healthy      Ready=True (every selected node applied it); when the policy selects no node
--                the message starts with "selects no node", and it names suspended nodes
--
-- Argo CD runs argocd-cm health scripts in gopher-lua (Lua 5.1) with only the base, package
-- and table libraries (and `require("os")` for os.time/os.date): there is no string, math or
-- global os library, so this script uses only `..`, tostring, type and ipairs. Numbers are
-- floats that tostring prints without ".0". test/kube/gitops-health.test.ts runs it that way.

local function field(t, key)
  if type(t) == "table" then
    return t[key]
  end
  return nil
end

local function condition(status, kind)
  local conditions = field(status, "conditions")
  if type(conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(conditions) do
    if field(c, "type") == kind then
      return c
    end
  end
  return nil
end

local function isTrue(c)
  return field(c, "status") == "True"
end

local function text(c, fallback)
  local message = field(c, "message")
  if type(message) == "string" and message ~= "" then
    return message
  end
  local reason = field(c, "reason")
  if type(reason) == "string" and reason ~= "" then
    return reason
  end
  return fallback
end

local hs = {}
local status = field(obj, "status")
local generation = field(field(obj, "metadata"), "generation")
local observed = field(status, "observedGeneration")
if type(generation) ~= "number" then
  generation = nil
end
if type(observed) ~= "number" then
  observed = nil
end

if type(status) ~= "table" or ((observed == nil or observed == 0) and field(status, "conditions") == nil) then
  hs.status = "Progressing"
  hs.message = "Waiting for the nftegress controller to report a status"
  return hs
end

if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the nftegress controller to observe generation " .. tostring(generation)
  return hs
end

local stalled = condition(status, "Stalled")
if isTrue(stalled) then
  hs.status = "Degraded"
  hs.message = text(stalled, "Stalled")
  return hs
end

local reconciling = condition(status, "Reconciling")
if isTrue(reconciling) then
  hs.status = "Progressing"
  hs.message = text(reconciling, "Reconciling")
  return hs
end

local ready = condition(status, "Ready")
if isTrue(ready) then
  hs.status = "Healthy"
  if field(field(status, "nodes"), "selected") == 0 then
    hs.message = "selects no node: " .. text(ready, "spec.nodeSelector matches no node, this policy is enforced nowhere")
  else
    hs.message = text(ready, "Ready")
  end
  return hs
end

hs.status = "Progressing"
hs.message = text(ready, "Waiting for the Ready condition")
return hs
