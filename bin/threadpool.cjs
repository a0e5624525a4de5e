'use strict';
// Every running pipeline holds one libuv pool thread in pollBus() while it waits for a message.
// With the default pool of 4, four pipelines starve fs, dns and crypto for good. Size the pool
// before anything in the process uses it; CommonJS require reads files synchronously, so this
// runs before the first pool job.
process.env.UV_THREADPOOL_SIZE ||= '256';
