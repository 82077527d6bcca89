FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY eldercare ./eldercare
RUN pip install --no-cache-dir '.[server]'
USER nobody
CMD ["eldercare", "--help"]
