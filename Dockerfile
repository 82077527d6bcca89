# One image for every server process of docker-compose.yml: ingest, the platform, the storage upkeep
# job, migrations and the simulator. Build: docker build -t eldercare .   (docs/deploy.md)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    ELDERCARE_DATA_DIR=/var/lib/eldercare

# A fixed uid/gid (10001) so that files written into shared volumes (the broker's password and ACL
# files) have a known owner; the directories exist in the image so that named volumes mounted on
# them start out owned by this user.
RUN groupadd --system --gid 10001 eldercare \
 && useradd --system --uid 10001 --gid eldercare --home-dir /var/lib/eldercare --shell /usr/sbin/nologin eldercare \
 && install -d -o eldercare -g eldercare -m 0750 \
      /var/lib/eldercare /var/lib/eldercare/broker /var/lib/eldercare/ingest-slots /var/lib/eldercare/sim

WORKDIR /src
# Dependencies first, from pyproject.toml alone (an empty package stands in), so that a code change
# rebuilds only the last layers.
COPY pyproject.toml README.md constraints.txt ./
RUN mkdir eldercare && touch eldercare/__init__.py \
 && pip install --no-cache-dir -c constraints.txt '.[server]' \
 && pip uninstall --yes eldercare && rm -rf eldercare build
COPY eldercare ./eldercare
RUN pip install --no-cache-dir --no-deps . && rm -rf build

COPY deploy/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
USER eldercare
WORKDIR /var/lib/eldercare
EXPOSE 8000 9108
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["eldercare", "--help"]
