// Request/response over a message channel (a worker thread or a forked child): each call carries
// an id, the answer comes back with it, with `result` or `error`.
export function requester(send, on) {
  const pending = new Map();
  let nextId = 1;
  on((m) => {
    if (m?.id === undefined) return;
    pending.get(m.id)?.(m);
    pending.delete(m.id);
  });
  return (msg) =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      pending.set(id, (m) => (m.error ? reject(new Error(m.error)) : resolve(m.result)));
      send({ ...msg, id });
    });
}
