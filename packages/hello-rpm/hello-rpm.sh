#!/bin/sh
echo "hello-rpm 1.0.4"
