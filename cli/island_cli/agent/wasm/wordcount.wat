;; wordcount: the utility Cargo shipped with the reference Island agent.
;;
;; A WASI command (preview 1) that reads all of stdin and writes one JSON line to stdout:
;;   {"bytes":<n>,"words":<n>,"lines":<n>}
;; Words are runs of bytes other than ASCII whitespace (space, \t \n \v \f \r); lines count
;; "\n" bytes, as `wc` does. It needs one 64 KiB page of memory whatever the input size.
;;
;; Memory map: 0 read iovec, 8 bytes read, 16 write iovec, 24 bytes written,
;; 256.. string constants, 480..500 digits, 512.. output line, 1024..5120 input buffer.
(module
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))

  (memory (export "memory") 1)
  (data (i32.const 256) "{\"bytes\":")
  (data (i32.const 272) ",\"words\":")
  (data (i32.const 288) ",\"lines\":")
  (data (i32.const 304) "}\n")

  (global $out (mut i32) (i32.const 512))

  (func $put_byte (param $byte i32)
    (i32.store8 (global.get $out) (local.get $byte))
    (global.set $out (i32.add (global.get $out) (i32.const 1))))

  (func $put_str (param $ptr i32) (param $len i32)
    (local $i i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (call $put_byte (i32.load8_u (i32.add (local.get $ptr) (local.get $i))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next))))

  ;; Decimal digits of an unsigned number, written backwards from 500, then copied out.
  (func $put_num (param $n i32)
    (local $p i32)
    (local.set $p (i32.const 500))
    (loop $digit
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p)
        (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
      (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
      (br_if $digit (i32.ne (local.get $n) (i32.const 0))))
    (call $put_str (local.get $p) (i32.sub (i32.const 500) (local.get $p))))

  (func (export "_start")
    (local $n i32) (local $i i32) (local $c i32)
    (local $bytes i32) (local $words i32) (local $lines i32) (local $in_word i32)
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 4096))
    (block $eof
      (loop $read
        (if (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8))
          (then (call $proc_exit (i32.const 1))))
        (local.set $n (i32.load (i32.const 8)))
        (br_if $eof (i32.eqz (local.get $n)))
        (local.set $bytes (i32.add (local.get $bytes) (local.get $n)))
        (local.set $i (i32.const 0))
        (block $scanned
          (loop $scan
            (br_if $scanned (i32.ge_u (local.get $i) (local.get $n)))
            (local.set $c (i32.load8_u (i32.add (i32.const 1024) (local.get $i))))
            (if (i32.eq (local.get $c) (i32.const 10))
              (then (local.set $lines (i32.add (local.get $lines) (i32.const 1)))))
            (if (i32.or (i32.eq (local.get $c) (i32.const 32))
                        (i32.le_u (i32.sub (local.get $c) (i32.const 9)) (i32.const 4)))
              (then (local.set $in_word (i32.const 0)))
              (else
                (if (i32.eqz (local.get $in_word))
                  (then
                    (local.set $words (i32.add (local.get $words) (i32.const 1)))
                    (local.set $in_word (i32.const 1))))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $scan)))
        (br $read)))
    (call $put_str (i32.const 256) (i32.const 9))
    (call $put_num (local.get $bytes))
    (call $put_str (i32.const 272) (i32.const 9))
    (call $put_num (local.get $words))
    (call $put_str (i32.const 288) (i32.const 9))
    (call $put_num (local.get $lines))
    (call $put_str (i32.const 304) (i32.const 2))
    (i32.store (i32.const 16) (i32.const 512))
    (i32.store (i32.const 20) (i32.sub (global.get $out) (i32.const 512)))
    (if (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24))
      (then (call $proc_exit (i32.const 1))))))
