#!/usr/bin/env node
'use strict';
require('./threadpool.cjs');
import('../dist/main.js');
