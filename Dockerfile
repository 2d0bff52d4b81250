# smartcti-gateway: one asyncio daemon, non-root, config under /etc/smartcti.
FROM python:3.12-slim

RUN useradd --system --uid 10001 --home-dir /var/lib/smartcti smartcti \
 && mkdir -p /etc/smartcti /var/log/smartcti /var/lib/smartcti \
 && chown smartcti /var/log/smartcti /var/lib/smartcti

WORKDIR /src
COPY pyproject.toml README.md ./
COPY smartcti_gateway ./smartcti_gateway
COPY wsdl ./wsdl
COPY config ./config
RUN pip install --no-cache-dir . && cp config/gateway.yaml /etc/smartcti/gateway.yaml && rm -rf /src
# the default config runs the embedded simulated NGC: mount your own at /etc/smartcti/gateway.yaml

USER smartcti
WORKDIR /var/lib/smartcti
EXPOSE 8080
VOLUME ["/etc/smartcti", "/var/log/smartcti", "/var/lib/smartcti"]
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)" || exit 1
ENTRYPOINT ["smartcti-gateway"]
CMD ["run", "--config", "/etc/smartcti/gateway.yaml"]
