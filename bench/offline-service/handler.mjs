// A trivial HTTP API handler: 202 with a small JSON body, nothing stored, nothing published.
let seq = 0;
export const accept = async () => ({
  statusCode: 202,
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ order_id: `trivial-${++seq}`, status: 'accepted' }),
});
