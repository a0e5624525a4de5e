#!/usr/bin/env node
// Entry point. Every running pipeline holds one libuv pool thread in pollBus(); the pool is sized
// here, before anything in the process has used it (a CommonJS require reads files synchronously).
'use strict';
process.env.UV_THREADPOOL_SIZE ||= '256';
import('../dist/main.js');
