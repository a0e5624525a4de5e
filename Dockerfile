# WebRTC MCU: every runtime dependency (GStreamer with its plugins, fonts, Node 20) and the server.
# Media uses UDP ports MCU_RTC_PORTS; run with --network host, or publish that range and set
# MCU_ICE_ADDRESSES to the address peers reach the host on.
FROM node:20-bookworm-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
      gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav \
      libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev \
      pkg-config python3 make g++ fonts-dejavu-core \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY package.json package-lock.json ./
# The postinstall applies patches/ (werift, gstreamer-superficial) after npm has built the addon,
# so the addon is built again from the patched source.
COPY patches ./patches
RUN npm install --no-audit --no-fund --loglevel=error \
 && npm rebuild gstreamer-superficial --foreground-scripts
COPY tsconfig.json ./
COPY src ./src
COPY bin ./bin
COPY layouts ./layouts
COPY public ./public
RUN node node_modules/typescript/bin/tsc -p . && npm prune --omit=dev --no-audit --no-fund --loglevel=error

ENV HOST=0.0.0.0 PORT=8080 MCU_RTC_PORTS=40000-40999 MCU_RECORDINGS_DIR=/data/recordings MCU_CACHE_DIR=/tmp/mcu-cache \
    MCU_SECRETS_FILE=/data/secrets.json
EXPOSE 8080 40000-40999/udp
VOLUME /data
CMD ["bin/mcu"]
