/**
 * The cluster's state in Redis, and the Lua scripts that change it atomically (Redis runs a
 * script alone, so two nodes that race for a room see one answer).
 *
 *   {p}nodes             set of node ids (pruned when a record has expired)
 *   {p}node:{id}         the node's record (JSON, NodeRecord), with a TTL refreshed by its heartbeat
 *   {p}room:{room}       the id of the node the room is placed on, with a TTL (the grace period)
 *   {p}noderooms:{id}    sorted set: rooms placed on the node, scored by when their placement ends
 *   {p}recordings        hash: recording id -> JSON { node, recording }
 *
 * Plain data and script text only; src/cluster/Registry.ts runs them.
 */

export const KEY_PREFIX = 'mcu:';

/** What a node publishes about itself every heartbeat. */
export interface NodeRecord {
  id: string;
  /** Base URL clients reach it at (MCU_PUBLIC_URL): redirects point there. */
  url: string;
  iceAddresses: string[];
  /** From admission by cost (src/core/admission.ts): measured load, joins not yet in it, and what the node may use. */
  loadCores: number;
  pendingCores: number;
  capacityCores: number;
  /** What one more participant with video costs, in cores: the unit placement counts load in. */
  participantCost: number;
  /** Rooms placed on it (counted in Redis, including those placed but not yet opened). */
  rooms: number;
  participants: number;
  /** MCU_MAX_ROOMS. */
  maxRooms: number;
  /** Set while it drains (SIGTERM): it takes no new rooms. */
  draining: boolean;
  startedAt: string;
}

/**
 * Places a room, or says where it is. KEYS[1] = room key. ARGV: prefix, room id, grace ms, a node
 * id to avoid (a draining node asking for a room it no longer holds), or "".
 * Returns the node id, or false when no node has room.
 *
 * Kept where it is if its node is alive (and not the one to avoid). Otherwise the node with the
 * lowest score among those that are not draining, hold fewer than their MCU_MAX_ROOMS, and (when
 * admission is on) have room for one more participant: the score is the node's CPU load plus
 * what it has committed, in participants' worth (cores / MCU_PARTICIPANT_COST), plus one per room
 * placed on it. Idle nodes therefore take rooms in turn, and a loaded node takes fewer.
 */
export const PLACE_LUA = `
local p, room, grace, avoid = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= avoid and redis.call('EXISTS', p .. 'node:' .. cur) == 1 then return cur end
local best, bestScore, bestRooms
for _, id in ipairs(redis.call('SMEMBERS', p .. 'nodes')) do
  local raw = redis.call('GET', p .. 'node:' .. id)
  if raw and id ~= avoid then
    local n = cjson.decode(raw)
    redis.call('ZREMRANGEBYSCORE', p .. 'noderooms:' .. id, '-inf', now)
    local rooms = redis.call('ZCARD', p .. 'noderooms:' .. id)
    local committed = n.loadCores + n.pendingCores
    local fits = (n.capacityCores <= 0) or (committed + n.participantCost <= n.capacityCores)
    if (not n.draining) and rooms < n.maxRooms and fits then
      local score = rooms
      if n.participantCost > 0 then score = score + committed / n.participantCost end
      if best == nil or score < bestScore or (score == bestScore and (rooms < bestRooms or (rooms == bestRooms and id < best))) then
        best, bestScore, bestRooms = id, score, rooms
      end
    end
  end
end
if best == nil then return false end
redis.call('SET', KEYS[1], best, 'PX', grace)
redis.call('ZADD', p .. 'noderooms:' .. best, now + grace, room)
if cur and cur ~= best then redis.call('ZREM', p .. 'noderooms:' .. cur, room) end
return best
`;

/**
 * One heartbeat: writes the node's record with its TTL, keeps its rooms placed (a room of its own
 * whose key is gone, expired or held by a dead node is claimed again, e.g. after Redis restarted
 * empty), and reads every live node back.
 * ARGV: prefix, node id, record JSON, ttl ms, grace ms, then the node's open rooms.
 * Returns { nodes: [record JSON...], conflicts: [room, owner, ...] }, as a flat array:
 * [n, record1..recordN, room1, owner1, ...].
 */
export const HEARTBEAT_LUA = `
local p, me, rec, ttl, grace = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', p .. 'node:' .. me, rec, 'PX', ttl)
redis.call('SADD', p .. 'nodes', me)
local conflicts = {}
for i = 6, #ARGV do
  local room = ARGV[i]
  local key = p .. 'room:' .. room
  local cur = redis.call('GET', key)
  if (not cur) or cur == me or redis.call('EXISTS', p .. 'node:' .. cur) == 0 then
    redis.call('SET', key, me, 'PX', grace)
    redis.call('ZADD', p .. 'noderooms:' .. me, now + grace, room)
  else
    table.insert(conflicts, room)
    table.insert(conflicts, cur)
  end
end
redis.call('ZREMRANGEBYSCORE', p .. 'noderooms:' .. me, '-inf', now)
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', p .. 'nodes')) do
  local raw = redis.call('GET', p .. 'node:' .. id)
  if raw then
    local n = cjson.decode(raw)
    redis.call('ZREMRANGEBYSCORE', p .. 'noderooms:' .. id, '-inf', now)
    n.rooms = redis.call('ZCARD', p .. 'noderooms:' .. id)
    table.insert(out, cjson.encode(n))
  else
    redis.call('SREM', p .. 'nodes', id)
  end
end
local res = { #out }
for _, v in ipairs(out) do table.insert(res, v) end
for _, v in ipairs(conflicts) do table.insert(res, v) end
return res
`;

/**
 * A node leaves the registry (drained, or closed): its record, and the placement of every room
 * that still points at it, so that the next join places them at once. ARGV: prefix, node id.
 */
export const LEAVE_LUA = `
local p, me = ARGV[1], ARGV[2]
for _, room in ipairs(redis.call('ZRANGE', p .. 'noderooms:' .. me, 0, -1)) do
  local key = p .. 'room:' .. room
  if redis.call('GET', key) == me then redis.call('DEL', key) end
end
redis.call('DEL', p .. 'noderooms:' .. me, p .. 'node:' .. me)
redis.call('SREM', p .. 'nodes', me)
return 1
`;

/** A default node id from the public URL: host and port, stable across restarts of the same node. */
export function defaultNodeId(publicUrl: string): string {
  const u = new URL(publicUrl);
  return `${u.hostname.replace(/[^A-Za-z0-9_.-]/g, '_')}-${u.port || (u.protocol === 'https:' ? '443' : '80')}`;
}
