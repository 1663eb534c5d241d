# sandboxd's Ruby kernel: one persistent interpreter for a session. It
# speaks the protocol of PROTOCOL.md (one JSON object per line: requests
# on fd 3, answers on fd 4, the cells' own output on fd 1 and 2), as the
# Python kernel does.
#
#   -> {"id": "3", "code": "x = 41\nx + 1"}
#   <- {"type": "done", "id": "3", "status": "ok", "result": {"text/plain": "42"}}
#   <- {"type": "done", "id": "4", "status": "error",
#       "error": {"name": "ZeroDivisionError", "value": "divided by 0", "traceback": "..."}}
#
# Cells run with eval in TOPLEVEL_BINDING, as irb's do, so local
# variables, methods, classes and required libraries persist from cell to
# cell. A SIGINT while a cell runs raises Interrupt in it; between cells
# it is ignored. The kernel runs inside the session's sandbox: nothing it
# does is trusted by the other side.
require 'fcntl'
require 'json'

# An anonymous class, so the kernel adds no name and no local variable to
# the cells' top level.
Class.new do
  def initialize
    # The pipes move out of the way of the cells' own file descriptors,
    # and are close-on-exec: no process a cell starts inherits them.
    @requests = IO.for_fd(move_high(3), 'r:UTF-8')
    @answers = IO.for_fd(move_high(4), 'w:UTF-8')
    @answers.sync = true
    # The cells' output streams live, and is whole before their done.
    $stdout.sync = $stderr.sync = true
    @count = 0
    @running = @taken = @pending = false
    trap('INT') do
      raise Interrupt if @running
      # Between taking a cell and running it: the cell's.
      @pending = true if @taken
    end
  end

  def move_high(fd)
    orig = IO.for_fd(fd)
    high = orig.fcntl(Fcntl::F_DUPFD, 100)
    orig.close
    IO.for_fd(high, autoclose: false).fcntl(Fcntl::F_SETFD, Fcntl::FD_CLOEXEC)
    high
  end

  def serve
    reply('type' => 'ready', 'language' => 'ruby', 'version' => RUBY_VERSION)
    while (line = @requests.gets)
      @taken, @pending = true, false
      req = JSON.parse(line)
      answer = execute(req.fetch('code'))
      @taken = false
      reply({ 'type' => 'done', 'id' => req.fetch('id') }.merge(answer))
    end
  end

  # reply writes an answer whole: the handler raises only while a cell
  # runs, so no interrupt cuts a line short.
  def reply(msg)
    @answers.write(JSON.generate(msg) + "\n")
  end

  def execute(code)
    @count += 1
    answer = { 'status' => 'ok' }
    begin
      # Rendering the value (a huge or slow inspect) is the cell's time
      # too: interruptible, as the code itself.
      begin
        @running = true
        raise Interrupt if @pending
        value = eval(code, TOPLEVEL_BINDING, "<cell-#{@count}>", 1)
        unless value.nil?
          TOPLEVEL_BINDING.local_variable_set(:_, value)
          answer['result'] = { 'text/plain' => text(value) }
        end
      ensure
        @running = false
      end
    # Exception, not StandardError: exit (SystemExit), an Interrupt and a
    # SyntaxError end the cell, not the kernel.
    rescue Exception => e
      answer = { 'status' => 'error', 'error' => error(e) }
    end
    [$stdout, $stderr, STDOUT, STDERR].each do |f|
      f.flush
    rescue StandardError
      nil
    end
    answer
  end

  def text(value)
    s = begin
      value.inspect.to_s
    rescue StandardError => e
      "<inspect failed: #{e.class}>"
    end
    max = 64 << 10
    s = s[0, max] + "... [inspect of #{s.length} characters cut]" if s.length > max
    utf8(s)
  end

  # error is e as the protocol has it, its traceback as ruby would print
  # it, without the kernel's own frames (its eval, serve, ...).
  def error(e)
    name = e.class.name || e.class.inspect
    msg = begin
      e.message.to_s
    rescue StandardError => m
      "<message failed: #{m.class}>"
    end
    first, *rest = (e.backtrace || []).reject { |l| l.start_with?("#{__FILE__}:") }
    head = first ? "#{first}: #{msg} (#{name})" : "#{msg} (#{name})"
    trace = [head, *rest.map { |l| "\tfrom #{l}" }].join("\n")
    { 'name' => utf8(name), 'value' => utf8(msg), 'traceback' => utf8(trace) }
  end

  # utf8 is s as valid UTF-8, which JSON.generate requires: a cell's
  # binary string or broken message has its bad bytes replaced.
  def utf8(s)
    s = s.dup.force_encoding(Encoding::UTF_8) if s.encoding == Encoding::BINARY
    s.encode(Encoding::UTF_8, invalid: :replace, undef: :replace).scrub
  end
end.new.serve
