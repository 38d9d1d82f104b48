# Ruang server image. Build from a clean checkout: docker build -t ruang .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY server ./server
COPY signaling ./signaling
RUN pip install --no-cache-dir --prefix=/install '.[postgres,redis]'

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    RUANG_DATA_DIR=/data RUANG_CERT_DIR=/data/certs RUANG_HOST=0.0.0.0 RUANG_PORT=8443
RUN groupadd --system ruang && useradd --system --gid ruang --home-dir /app --shell /usr/sbin/nologin ruang \
    && mkdir -p /data /app && chown ruang:ruang /data
COPY --from=build /install /usr/local
WORKDIR /app
COPY --chown=root:root web ./web
COPY --chown=root:root server ./server
COPY --chown=root:root signaling ./signaling
USER ruang
VOLUME ["/data"]
EXPOSE 8443
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os,ssl,sys,urllib.request as u; s='http' if os.environ.get('RUANG_PLAIN_HTTP','').lower() in ('1','true','yes','on') else 'https'; c=ssl._create_unverified_context(); sys.exit(0 if u.urlopen(f'{s}://127.0.0.1:{os.environ.get(\"RUANG_PORT\",\"8443\")}/healthz', context=c if s=='https' else None, timeout=4).status==200 else 1)"]
# Run from /app so that server/ finds web/ beside it.
ENTRYPOINT ["python", "-m", "server"]
CMD ["serve"]
