#!/bin/sh
# Action and back2norm script of the demo's "attackers" moving average: logs one line per
# event. Arguments as xenoeye's: <mo> <mavg> <level> <notification-file> <key...> <value> <limit>
echo "$(date '+%F %T') $MIRRORFLOW_EVENT $*" >> "${0%/*}/../alerts.log"
