#!/bin/sh
# Entry point of aiorch/rabbitmq:local (aiorch.deploy.images.build_rabbitmq_image): the
# official rabbitmq image's contract on Debian's RabbitMQ. RABBITMQ_DEFAULT_USER and
# RABBITMQ_DEFAULT_PASS create the first user when the node's database is new; the node
# listens for AMQP on 5672 on every interface and serves Prometheus metrics on 15692
# (the rabbitmq_prometheus plugin). It runs as the rabbitmq user, data in its home.
set -eu
: "${RABBITMQ_DEFAULT_PASS:?RABBITMQ_DEFAULT_PASS must be set}"
umask 077
cat >"$HOME/rabbitmq.conf" <<CONF
listeners.tcp.default = 5672
loopback_users = none
default_user = ${RABBITMQ_DEFAULT_USER:-guest}
default_pass = ${RABBITMQ_DEFAULT_PASS}
prometheus.tcp.port = 15692
CONF
echo '[rabbitmq_prometheus].' >"$HOME/enabled_plugins"
export RABBITMQ_CONFIG_FILE="$HOME/rabbitmq" RABBITMQ_ENABLED_PLUGINS_FILE="$HOME/enabled_plugins"
exec /usr/lib/rabbitmq/bin/rabbitmq-server "$@"
